# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/gavinbunney/kubectl" {
  version     = "1.19.0"
  constraints = "~> 1.19"
  hashes = [
    "h1:83lld8A/Ua0o8/9iZmnsfMPJCasZeFOgNciIaLp0rew=",
  ]
}
