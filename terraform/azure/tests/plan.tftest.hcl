# tofu test: plans the module against a mock of the azurerm provider (its real schema, no Azure API), so the
# module's own logic is checked offline: variables and their validations, for_each, names, outputs.
mock_provider "azurerm" {
  # The provider validates the IDs one resource passes to another: the mocks return well-formed ones.
  mock_resource "azurerm_resource_group" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/txmesh-prod-rg"
    }
  }
  mock_resource "azurerm_subnet" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/txmesh-prod-rg/providers/Microsoft.Network/virtualNetworks/txmesh-prod-vnet/subnets/nodes"
    }
  }
  mock_resource "azurerm_user_assigned_identity" {
    defaults = {
      id           = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/txmesh-prod-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/txmesh-prod-id"
      principal_id = "44444444-4444-4444-4444-444444444444"
      client_id    = "55555555-5555-5555-5555-555555555555"
    }
  }
  mock_resource "azurerm_kubernetes_cluster" {
    defaults = {
      id              = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/txmesh-prod-rg/providers/Microsoft.ContainerService/managedClusters/txmesh-prod-aks"
      oidc_issuer_url = "https://westeurope.oic.prod-aks.azure.com/00000000-0000-0000-0000-000000000000/11111111-1111-1111-1111-111111111111/"
    }
  }
  mock_resource "azurerm_storage_account" {
    defaults = {
      id                    = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/txmesh-prod-rg/providers/Microsoft.Storage/storageAccounts/txmeshprodbkp000000"
      primary_blob_endpoint = "https://txmeshprodbkp000000.blob.core.windows.net/"
    }
  }
  mock_resource "azurerm_storage_container" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/txmesh-prod-rg/providers/Microsoft.Storage/storageAccounts/txmeshprodbkp000000/blobServices/default/containers/txmesh-backups"
    }
  }
  mock_data "azurerm_client_config" {
    defaults = {
      tenant_id = "22222222-2222-2222-2222-222222222222"
    }
  }
}

variables {
  subscription_id        = "00000000-0000-0000-0000-000000000000"
  admin_group_object_ids = ["33333333-3333-3333-3333-333333333333"]
}

run "production_defaults" {
  command = plan

  assert {
    condition     = azurerm_kubernetes_cluster.this.default_node_pool[0].zones == toset(["1", "2", "3"]) && azurerm_kubernetes_cluster_node_pool.apps.zones == toset(["1", "2", "3"])
    error_message = "system and apps pools span the three zones"
  }
  assert {
    condition     = [for z in ["1", "2", "3"] : azurerm_kubernetes_cluster_node_pool.db[z].zones] == [toset(["1"]), toset(["2"]), toset(["3"])]
    error_message = "one database pool per zone"
  }
  assert {
    condition     = alltrue([for p in azurerm_kubernetes_cluster_node_pool.db : p.node_taints == tolist(["txmesh.io/pool=db:NoSchedule"]) && p.min_count == 2])
    error_message = "database pools are tainted and hold one bank-db and one store-db instance per zone"
  }
  assert {
    condition     = azurerm_kubernetes_cluster.this.workload_identity_enabled && azurerm_kubernetes_cluster.this.oidc_issuer_enabled && azurerm_kubernetes_cluster.this.local_account_disabled
    error_message = "workload identity on, static credentials off"
  }
  assert {
    condition     = can(regex("^[a-z0-9]{3,24}$", azurerm_storage_account.backup.name)) && !azurerm_storage_account.backup.shared_access_key_enabled
    error_message = "a valid storage account name, no shared keys"
  }
  assert {
    condition     = sort([for c in azurerm_federated_identity_credential.backup : c.subject]) == tolist(["system:serviceaccount:txmesh:bank-db", "system:serviceaccount:txmesh:store-db"])
    error_message = "the backup identity trusts the two CloudNativePG ServiceAccounts"
  }
  assert {
    condition     = output.backup_destination_paths["bank-db"] == "https://txmeshprodbkp000000.blob.core.windows.net/txmesh-backups/bank-db"
    error_message = "destinationPath of bank-db's ObjectStore"
  }
}

run "zones_must_be_three" {
  command = plan
  variables {
    zones = ["1", "2"]
  }
  expect_failures = [var.zones]
}

run "db_pool_needs_two_nodes_per_zone" {
  command = plan
  variables {
    db_pool = { vm_size = "Standard_E16ds_v5", nodes_per_zone = 1, max_per_zone = 3 }
  }
  expect_failures = [var.db_pool]
}
