variable "kubeconfig" {
  description = "Kubeconfig of the target cluster (terraform/azure output kubeconfig_command writes one)."
  type        = string
  default     = "kubeconfig-production"
}

variable "kube_context" {
  description = "Context in the kubeconfig; empty for its current context."
  type        = string
  default     = ""
}

variable "storage_class" {
  description = <<-EOT
    The StorageClass CloudNativePG's data and WAL volumes use (kustomize/overlays/production: storageClass ssd).
    Defaults: Azure Disk CSI, Premium SSD v2 (IOPS and throughput set apart from size), zonal disks bound where
    the pod is scheduled; replication is PostgreSQL's job, across zones, so the disks need no ZRS.
    For the throwaway cluster of make e2e: provisioner rancher.io/local-path, parameters {}.
  EOT
  type = object({
    name        = string
    provisioner = string
    parameters  = map(string)
  })
  default = {
    name        = "ssd"
    provisioner = "disk.csi.azure.com"
    parameters = {
      skuName           = "PremiumV2_LRS"
      DiskIOPSReadWrite = "6000"
      DiskMBpsReadWrite = "250"
      cachingMode       = "None"
    }
  }
}
