# Flux bootstrap: commits Flux's own manifests (flux-system/) into the Git repository at var.path, installs
# them in the cluster and points the flux-system Kustomization at that path, which applies
# flux/clusters/production (infra-controllers -> infra-configs -> apps, image automation). The same code
# bootstraps any cluster reachable with a kubeconfig from any Git server (HTTPS or SSH): the throwaway cluster
# of make e2e with a local Git server too (terraform/README.md).
#
# The fluxcd/flux provider is not served by the Go module proxy, so this module is not init/validated here
# (terraform/README.md says what was checked instead); it has no lock file for the same reason.
terraform {
  required_version = ">= 1.10.0"

  required_providers {
    flux = {
      source  = "fluxcd/flux"
      version = "~> 1.8"
    }
  }

  backend "azurerm" {
    use_azuread_auth = true
  }
}

provider "flux" {
  kubernetes = {
    config_path    = var.kubeconfig
    config_context = var.kube_context == "" ? null : var.kube_context
  }
  git = {
    url          = var.git_url
    branch       = var.git_branch
    author_name  = "txmesh platform"
    author_email = var.git_author_email
    http = var.git_ssh_private_key != "" ? null : {
      username              = var.git_username
      password              = var.git_password
      certificate_authority = var.git_ca_pem == "" ? null : var.git_ca_pem
    }
    ssh = var.git_ssh_private_key == "" ? null : {
      username    = "git"
      private_key = var.git_ssh_private_key
    }
  }
}
