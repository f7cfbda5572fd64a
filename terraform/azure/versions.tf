# The production cluster on Azure: AKS across three availability zones, a node pool for the apps and one for
# the databases, and the backup store with the workload identity CloudNativePG's backups use.
# Why Azure: terraform/README.md (the one big-three provider the Go module proxy serves a current build of).
terraform {
  required_version = ">= 1.10.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 5.2"
    }
  }

  # State in an Azure storage account created out of band (one per platform team, not by this code):
  #   tofu init -backend-config=backend.hcl   (see backend.hcl.example)
  backend "azurerm" {
    use_azuread_auth = true
  }
}

provider "azurerm" {
  subscription_id = var.subscription_id
  # The backup storage account allows no shared keys: data-plane calls (the container) use Entra ID too.
  storage_use_azuread = true

  features {
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}
