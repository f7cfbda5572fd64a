output "resource_group" {
  value = azurerm_resource_group.this.name
}

output "cluster_name" {
  value = azurerm_kubernetes_cluster.this.name
}

output "kubeconfig_command" {
  description = "Writes an Entra ID kubeconfig (kubelogin) for terraform/kubernetes and terraform/flux-bootstrap."
  value       = "az aks get-credentials -g ${azurerm_resource_group.this.name} -n ${azurerm_kubernetes_cluster.this.name} --file kubeconfig-production && kubelogin convert-kubeconfig -l azurecli --kubeconfig kubeconfig-production"
}

output "oidc_issuer_url" {
  value = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "backup_identity_client_id" {
  description = "Annotation azure.workload.identity/client-id of the bank-db and store-db ServiceAccounts."
  value       = azurerm_user_assigned_identity.backup.client_id
}

output "backup_destination_paths" {
  description = "ObjectStore spec.configuration.destinationPath per CloudNativePG Cluster."
  value = {
    for c in var.database_clusters :
    c => "${azurerm_storage_account.backup.primary_blob_endpoint}${azurerm_storage_container.backup.name}/${c}"
  }
}

output "node_pools" {
  description = "Node pools and the label that selects them (txmesh.io/pool)."
  value = merge(
    { system = "critical add-ons only", apps = "txmesh.io/pool=apps" },
    { for z, p in azurerm_kubernetes_cluster_node_pool.db : p.name => "txmesh.io/pool=db, zone ${z}, taint txmesh.io/pool=db:NoSchedule" },
  )
}
