output "storage_class" {
  value = var.storage_class.name
}
