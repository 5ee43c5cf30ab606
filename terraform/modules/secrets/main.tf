# The secrets only, never a version: scripts/deploy.sh adds the values with
# `gcloud secrets versions add`, so they never enter the Terraform state.
resource "google_secret_manager_secret" "this" {
  for_each = toset(var.secret_names)

  project   = var.project_id
  secret_id = "${var.deployment_name}-${each.value}"
  labels    = var.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}
