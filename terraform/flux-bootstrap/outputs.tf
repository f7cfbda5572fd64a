output "repository_files" {
  description = "Files the bootstrap committed (flux-system/gotk-components.yaml, gotk-sync.yaml, kustomization.yaml)."
  value       = keys(flux_bootstrap_git.this.repository_files)
}
