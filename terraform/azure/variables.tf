variable "subscription_id" {
  description = "Azure subscription that holds the production cluster."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name (the cluster is <name>-aks)."
  type        = string
  default     = "txmesh-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name: 3-21 of [a-z0-9-], starting with a letter."
  }
}

variable "location" {
  description = "Azure region; it must offer three availability zones for the VM sizes below."
  type        = string
  default     = "westeurope"
}

variable "zones" {
  description = "Availability zones every node pool spans (CloudNativePG spreads each cluster's 3 instances over them)."
  type        = list(string)
  default     = ["1", "2", "3"]

  validation {
    condition     = length(var.zones) == 3
    error_message = "zones: three zones, one per PostgreSQL instance (kustomize/overlays/production spreads them with maxSkew 1)."
  }
}

variable "kubernetes_version" {
  description = "AKS Kubernetes minor version (patches follow automatic_upgrade_channel = patch)."
  type        = string
  default     = "1.32"
}

variable "vnet_cidr" {
  description = "Address space of the cluster's virtual network."
  type        = string
  default     = "10.40.0.0/16"
}

variable "node_subnet_cidr" {
  description = "Subnet of the node pools (pods use the overlay network, pod_cidr)."
  type        = string
  default     = "10.40.0.0/20"
}

variable "pod_cidr" {
  description = "Azure CNI overlay pod address space."
  type        = string
  default     = "192.168.0.0/16"
}

variable "service_cidr" {
  description = "Kubernetes Service address space."
  type        = string
  default     = "172.16.0.0/16"
}

variable "admin_group_object_ids" {
  description = "Entra ID groups that are cluster admins (Azure RBAC for Kubernetes; local accounts are disabled)."
  type        = list(string)
}

variable "system_pool" {
  description = "System node pool (CoreDNS, metrics-server, CSI drivers; tainted for critical add-ons only)."
  type = object({
    vm_size   = string
    min_count = number
    max_count = number
  })
  default = { vm_size = "Standard_D4ds_v5", min_count = 3, max_count = 6 }
}

variable "apps_pool" {
  description = "Node pool of the Bank, the Store, Istio, Flux, Flagger, Prometheus. Sizing: docs/scaling.md."
  type = object({
    vm_size   = string
    min_count = number
    max_count = number
  })
  default = { vm_size = "Standard_D8ds_v5", min_count = 3, max_count = 12 }
}

variable "db_pool" {
  description = "Per-zone node pools of the CloudNativePG instances only (tainted; required anti-affinity puts one instance per node). Sizing: docs/scaling.md."
  type = object({
    vm_size        = string
    nodes_per_zone = number
    max_per_zone   = number
  })
  default = { vm_size = "Standard_E16ds_v5", nodes_per_zone = 2, max_per_zone = 3 }

  validation {
    condition     = var.db_pool.nodes_per_zone >= 2 && var.db_pool.max_per_zone >= var.db_pool.nodes_per_zone
    error_message = "db_pool.nodes_per_zone: at least 2 (one bank-db and one store-db instance per zone), max_per_zone no lower."
  }
}

variable "backup_retention_days" {
  description = "Soft-delete window of the backup blobs; Barman's own retention (ObjectStore retentionPolicy, 30d) decides what is deleted."
  type        = number
  default     = 35
}

variable "app_namespace" {
  description = "Namespace of the CloudNativePG clusters (kustomize/overlays/production)."
  type        = string
  default     = "txmesh"
}

variable "database_clusters" {
  description = "CloudNativePG Clusters that archive WAL to the backup store; each runs under a ServiceAccount of its own name."
  type        = list(string)
  default     = ["bank-db", "store-db"]
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = { system = "txmesh", environment = "production", managed-by = "opentofu" }
}
