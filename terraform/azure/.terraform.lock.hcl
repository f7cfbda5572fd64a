# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/hashicorp/azurerm" {
  version     = "5.2.0"
  constraints = "~> 5.2"
  hashes = [
    "h1:Rz8EvEcUMeQpTFVjFG7Ixqt6Ne+mLTbS0Xr55d0IPeg=",
  ]
}
