resource "azurerm_resource_group" "this" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = var.tags
}

resource "azurerm_virtual_network" "this" {
  name                = "${var.name}-vnet"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vnet_cidr]
  tags                = var.tags
}

resource "azurerm_subnet" "nodes" {
  name                 = "nodes"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.node_subnet_cidr]
  # The backup account is reached over the Azure backbone from the nodes.
  service_endpoint {
    service = "Microsoft.Storage"
  }
}

# Outbound through a zone-redundant NAT gateway per zone would be the next step; a NAT gateway is zonal, so one
# in a single zone would make egress (image pulls, backups) depend on that zone. AKS's managed NAT gateway
# (outbound_type managedNATGateway) has the same limit; the standard load balancer's outbound rules are
# zone-redundant, which is why they are used here.
