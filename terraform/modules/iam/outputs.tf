output "custom_roles" {
  description = "Custom role ids by key."
  value = {
    jobLauncher      = google_project_iam_custom_role.job_launcher.id
    apiExecutions    = google_project_iam_custom_role.api_executions.id
    reaperExecutions = google_project_iam_custom_role.reaper_executions.id
  }
}

output "pubsub_service_agent" {
  description = "The project's Pub/Sub service agent (dead-lettering)."
  value       = local.pubsub_service_agent
}
