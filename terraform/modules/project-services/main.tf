# The Google APIs AgentFleet calls or deploys onto. Left enabled on destroy: other workloads in the
# project may use them too, and disabling an API deletes what depends on it.
resource "google_project_service" "this" {
  for_each = toset(var.services)

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}
