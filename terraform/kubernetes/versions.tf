# The cluster-level objects the workloads expect before Flux reconciles them: the StorageClass `ssd` of
# kustomize/overlays/production's CloudNativePG volumes. Applied with a kubeconfig, after terraform/azure.
terraform {
  required_version = ">= 1.10.0"

  required_providers {
    kubectl = {
      source  = "gavinbunney/kubectl"
      version = "~> 1.19"
    }
  }

  backend "azurerm" {
    use_azuread_auth = true
  }
}

provider "kubectl" {
  load_config_file = true
  config_path      = var.kubeconfig
  config_context   = var.kube_context
  # An apply that fails (an API server still settling after the cluster was created) is tried again.
  apply_retry_count = 3
}
