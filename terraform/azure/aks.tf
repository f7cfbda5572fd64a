data "azurerm_client_config" "current" {}

# The control plane's identity (a user-assigned one, so it can be granted the node subnet before the cluster
# exists and survives a cluster re-create).
resource "azurerm_user_assigned_identity" "cluster" {
  name                = "${var.name}-aks"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = var.tags
}

resource "azurerm_role_assignment" "cluster_subnet" {
  scope                = azurerm_subnet.nodes.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.cluster.principal_id
}

resource "azurerm_kubernetes_cluster" "this" {
  name                = "${var.name}-aks"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  dns_prefix          = var.name
  kubernetes_version  = var.kubernetes_version
  # Standard tier: the financially backed API server SLA, zone-redundant control plane.
  sku_tier                  = "Standard"
  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"

  # Workload identity: the OIDC issuer lets Entra ID trust Kubernetes ServiceAccount tokens (backup.tf).
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  # No static kubeconfig credentials: Entra ID users and groups, Azure RBAC for Kubernetes authorization.
  local_account_disabled = true
  azure_active_directory_role_based_access_control {
    tenant_id              = data.azurerm_client_config.current.tenant_id
    azure_rbac_enabled     = true
    admin_group_object_ids = var.admin_group_object_ids
  }

  # The cluster autoscaler on the node pools below (Manual), not node auto-provisioning (Auto): the per-zone
  # database pools are what keeps a zonal volume's replacement node in its zone.
  node_provisioning_profile {
    mode = "Manual"
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.cluster.id]
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_pool.vm_size
    zones                        = var.zones
    auto_scaling_enabled         = true
    min_count                    = var.system_pool.min_count
    max_count                    = var.system_pool.max_count
    vnet_subnet_id               = azurerm_subnet.nodes.id
    only_critical_addons_enabled = true
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = 100
    temporary_name_for_rotation  = "systemtmp"
    upgrade_settings {
      max_surge = "33%"
    }
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    # Cilium enforces the NetworkPolicies of kustomize/components/network-policies.
    network_data_plane = "cilium"
    network_policy     = "cilium"
    pod_cidr           = var.pod_cidr
    service_cidr       = var.service_cidr
    dns_service_ip     = cidrhost(var.service_cidr, 10)
    load_balancer_sku  = "standard"
    outbound_type      = "loadBalancer"
  }

  # The Azure Disk CSI driver provisions the CloudNativePG volumes (terraform/kubernetes: StorageClass ssd);
  # its snapshot controller serves CloudNativePG's volume-snapshot backups if they are turned on.
  storage_profile {
    disk_driver_enabled         = true
    file_driver_enabled         = false
    blob_driver_enabled         = false
    snapshot_controller_enabled = true
  }

  # Node-image and Kubernetes patch upgrades at night, outside the nightly base backups (02:00-03:00 UTC).
  maintenance_window_auto_upgrade {
    frequency   = "Weekly"
    interval    = 1
    day_of_week = "Tuesday"
    start_time  = "04:00"
    utc_offset  = "+00:00"
    duration    = 4
  }

  maintenance_window_node_os {
    frequency   = "Weekly"
    interval    = 1
    day_of_week = "Wednesday"
    start_time  = "04:00"
    utc_offset  = "+00:00"
    duration    = 4
  }

  tags = var.tags

  depends_on = [azurerm_role_assignment.cluster_subnet]

  lifecycle {
    # The autoscaler owns the node counts.
    ignore_changes = [default_node_pool[0].node_count]
  }
}

# The Bank, the Store and the platform controllers. Spread over the three zones; losing one leaves two thirds
# of the pods, which is what docs/scaling.md sizes the pool for.
resource "azurerm_kubernetes_cluster_node_pool" "apps" {
  name                  = "apps"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.this.id
  mode                  = "User"
  vm_size               = var.apps_pool.vm_size
  zones                 = var.zones
  auto_scaling_enabled  = true
  min_count             = var.apps_pool.min_count
  max_count             = var.apps_pool.max_count
  vnet_subnet_id        = azurerm_subnet.nodes.id
  os_disk_type          = "Ephemeral"
  os_disk_size_gb       = 128
  node_labels = {
    "txmesh.io/pool" = "apps"
  }
  upgrade_settings {
    max_surge = "33%"
  }
  tags = var.tags

  lifecycle {
    ignore_changes = [node_count]
  }
}

# PostgreSQL only: memory-optimised VMs, tainted so nothing else lands there, one pool per zone. An instance's
# volume is a zonal disk: after a node loss its pod can only run in the same zone, and the autoscaler of a
# pool spanning three zones may add the node elsewhere; a pool per zone scales where the pod waits (AKS's
# guidance for zonal volumes). kustomize/overlays/production's Clusters need the matching toleration and
# nodeSelector to use these pools (terraform/README.md); until then they schedule on the apps pool and these
# stay at their minimum. Upgrades drain one node at a time (max_surge 1): each drain is a CloudNativePG
# switchover, never two instances of one cluster at once.
resource "azurerm_kubernetes_cluster_node_pool" "db" {
  for_each = toset(var.zones)

  name                  = "db${each.key}"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.this.id
  mode                  = "User"
  vm_size               = var.db_pool.vm_size
  zones                 = [each.key]
  auto_scaling_enabled  = true
  min_count             = var.db_pool.nodes_per_zone
  max_count             = var.db_pool.max_per_zone
  vnet_subnet_id        = azurerm_subnet.nodes.id
  os_disk_type          = "Managed"
  os_disk_size_gb       = 128
  node_labels = {
    "txmesh.io/pool" = "db"
  }
  node_taints = ["txmesh.io/pool=db:NoSchedule"]
  upgrade_settings {
    max_surge                     = "1"
    drain_timeout_in_minutes      = 30
    node_soak_duration_in_minutes = 5
  }
  tags = var.tags

  lifecycle {
    ignore_changes = [node_count]
  }
}
