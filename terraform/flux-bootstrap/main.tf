resource "flux_bootstrap_git" "this" {
  path = var.path
  # flux/clusters/production/image-automation.yaml needs both image controllers.
  components_extra = ["image-reflector-controller", "image-automation-controller"]
  # The manifests compiled into the provider: nothing is downloaded at apply time, so the Flux version is
  # the provider's (the lock file's) and moves only with it.
  embedded_manifests = true
  interval           = "1m0s"
  network_policy     = true

  timeouts = {
    create = "15m"
  }
}
