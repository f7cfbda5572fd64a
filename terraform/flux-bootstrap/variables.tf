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

variable "git_url" {
  description = "The txmesh repository Flux reconciles from and image automation pushes to (https://... or ssh://git@...)."
  type        = string
}

variable "git_branch" {
  type    = string
  default = "main"
}

variable "git_username" {
  description = "HTTPS basic-auth user (ignored with an SSH key)."
  type        = string
  default     = "git"
}

variable "git_password" {
  description = "HTTPS token with write access (image automation pushes tag bumps). Pass with TF_VAR_git_password, never in a file."
  type        = string
  default     = ""
  sensitive   = true
}

variable "git_ssh_private_key" {
  description = "SSH deploy key with write access, instead of HTTPS. Pass with TF_VAR_git_ssh_private_key."
  type        = string
  default     = ""
  sensitive   = true
}

variable "git_ca_pem" {
  description = "CA bundle of a Git server with a private certificate (the throwaway cluster's Git server)."
  type        = string
  default     = ""
}

variable "git_author_email" {
  type    = string
  default = "platform@txmesh.local"
}

variable "path" {
  description = "Directory of the cluster in the repository; Flux writes flux-system/ under it."
  type        = string
  default     = "flux/clusters/production"
}
