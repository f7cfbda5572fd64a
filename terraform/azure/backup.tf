# The backup object store of kustomize/overlays/production (Barman Cloud plugin: WAL archive + nightly base
# backups, ObjectStore bank-db-backup and store-db-backup) and the identity its instances use to reach it.
#
# The overlay today names s3://txmesh-backups/<cluster> with static keys from a Secret. On Azure the same
# ObjectStores point at this account's container and authenticate with workload identity instead of keys
# (barman's azureCredentials.inheritFromAzureAD); the overlay patch that does it is in terraform/README.md and
# the values come from the outputs below.

locals {
  # Storage account names: 3-24 lower-case letters and digits, globally unique.
  backup_account = substr(replace("${var.name}bkp${substr(sha256(var.subscription_id), 0, 6)}", "-", ""), 0, 24)
}

resource "azurerm_storage_account" "backup" {
  name                = local.backup_account
  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location
  account_kind        = "StorageV2"
  account_tier        = "Standard"
  # Geo-zone-redundant: three zones here and a copy in the paired region, so the WAL archive outlives the
  # region (docs/scaling.md: RPO of a region loss without a replica cluster).
  account_replication_type          = "GZRS"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  shared_access_key_enabled         = false
  allow_nested_items_to_be_public   = false
  public_network_access_enabled     = true
  infrastructure_encryption_enabled = true

  network_rules {
    default_action             = "Deny"
    bypass                     = ["AzureServices"]
    virtual_network_subnet_ids = [azurerm_subnet.nodes.id]
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = var.backup_retention_days
    }
    container_delete_retention_policy {
      days = var.backup_retention_days
    }
  }

  tags = var.tags
}

# Resource-manager API (storage_account_id), so the account's network rules do not block the apply.
resource "azurerm_storage_container" "backup" {
  name                  = "txmesh-backups"
  storage_account_id    = azurerm_storage_account.backup.id
  container_access_type = "private"
}

# One identity for the database instances; each CloudNativePG Cluster runs under a ServiceAccount named after
# it (bank-db, store-db), which is what the federated credentials trust.
resource "azurerm_user_assigned_identity" "backup" {
  name                = "${var.name}-pg-backup"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "backup" {
  for_each = toset(var.database_clusters)

  name                      = "${var.app_namespace}-${each.key}"
  user_assigned_identity_id = azurerm_user_assigned_identity.backup.id
  audience                  = ["api://AzureADTokenExchange"]
  issuer                    = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject                   = "system:serviceaccount:${var.app_namespace}:${each.key}"
}

# Read and write blobs in this one container, nothing else.
resource "azurerm_role_assignment" "backup" {
  scope                = azurerm_storage_container.backup.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.backup.principal_id
}
