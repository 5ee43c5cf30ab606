# The Docker repository the images live in: ${region}-docker.pkg.dev/${project}/${repository_id}/{agent,gpt-oss,mcp}.
resource "google_artifact_registry_repository" "docker" {
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  description   = "AgentFleet container images (agent, gpt-oss, mcp)"
  format        = "DOCKER"
  labels        = var.labels

  docker_config {
    immutable_tags = false
  }

  # Untagged agent, gpt-oss and mcp images (a tag moved to a newer build) are deleted after a while;
  # tagged ones, and the images Cloud Functions builds here, are kept.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state             = "UNTAGGED"
      package_name_prefixes = var.cleaned_packages
      older_than            = "${var.untagged_retention_days * 86400}s"
    }
  }
}
