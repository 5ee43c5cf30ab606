output "repository_id" {
  description = "The repository id."
  value       = google_artifact_registry_repository.docker.repository_id
}

output "url" {
  description = "Image prefix: REGION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.docker.repository_id}"
}

output "id" {
  description = "Repository resource id, projects/P/locations/R/repositories/NAME (the functions' docker_repository)."
  value       = google_artifact_registry_repository.docker.id
}
