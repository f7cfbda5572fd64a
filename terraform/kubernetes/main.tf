# Retain: deleting a Cluster (or a mistaken prune) leaves the disks, which a re-created Cluster can be
# pointed at; an operator deletes released volumes on purpose. Expansion: CloudNativePG grows a volume online
# when spec.storage.size grows.
resource "kubectl_manifest" "storage_class" {
  # Server-side apply without force_conflicts: a field another manager owns is an error, not a takeover.
  server_side_apply = true
  yaml_body = yamlencode({
    apiVersion = "storage.k8s.io/v1"
    kind       = "StorageClass"
    metadata = {
      name   = var.storage_class.name
      labels = { "app.kubernetes.io/managed-by" = "opentofu" }
    }
    provisioner          = var.storage_class.provisioner
    parameters           = var.storage_class.parameters
    reclaimPolicy        = "Retain"
    allowVolumeExpansion = true
    volumeBindingMode    = "WaitForFirstConsumer"
  })
}
