locals {
  # One source of truth: the composite indexes FirestoreTaskStore's queries need, as the code declares
  # them (src/agentfleet/gcp/firestore_indexes.json; a test checks the code's query shapes against it).
  indexes_file = coalesce(var.indexes_file, "${path.module}/../../../src/agentfleet/gcp/firestore_indexes.json")
  indexes = {
    for index in jsondecode(file(local.indexes_file)).indexes :
    join("-", concat([index.collection], [for f in index.fields : "${f.field_path}:${f.order}"])) => index
  }
}

resource "google_firestore_database" "this" {
  project                           = var.project_id
  name                              = var.database_id
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = var.point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.delete_protection ? "ABANDON" : "DELETE"
}

resource "google_firestore_index" "tasks" {
  for_each = local.indexes

  project = var.project_id
  # The database's name as the API returns it, so that the index waits for the database.
  database = google_firestore_database.this.name
  # "tasks" in the file is the tasks collection, whatever AGENTFLEET_TASKS_COLLECTION names it.
  collection  = each.value.collection == "tasks" ? var.tasks_collection : each.value.collection
  query_scope = each.value.query_scope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }
}
