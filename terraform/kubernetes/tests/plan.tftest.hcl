# tofu test: plans against a mock of the kubectl provider (its real schema, no cluster).
mock_provider "kubectl" {}

run "production_storage_class" {
  command = plan

  assert {
    condition = yamldecode(kubectl_manifest.storage_class.yaml_body) == {
      apiVersion           = "storage.k8s.io/v1"
      kind                 = "StorageClass"
      metadata             = { name = "ssd", labels = { "app.kubernetes.io/managed-by" = "opentofu" } }
      provisioner          = "disk.csi.azure.com"
      parameters           = { skuName = "PremiumV2_LRS", DiskIOPSReadWrite = "6000", DiskMBpsReadWrite = "250", cachingMode = "None" }
      reclaimPolicy        = "Retain"
      allowVolumeExpansion = true
      volumeBindingMode    = "WaitForFirstConsumer"
    }
    error_message = "the StorageClass kustomize/overlays/production names (ssd), Premium SSD v2, bound where the pod runs"
  }
}

run "throwaway_cluster_storage_class" {
  command = plan
  variables {
    storage_class = { name = "ssd", provisioner = "rancher.io/local-path", parameters = {} }
  }

  assert {
    condition     = yamldecode(kubectl_manifest.storage_class.yaml_body).provisioner == "rancher.io/local-path"
    error_message = "the same module serves the throwaway cluster's local-path provisioner"
  }
}
