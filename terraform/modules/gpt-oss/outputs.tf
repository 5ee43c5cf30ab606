output "name" {
  description = "Service name (where roles/run.invoker is granted)."
  value       = google_cloud_run_v2_service.gpt_oss.name
}

output "url" {
  description = "Service URL."
  value       = google_cloud_run_v2_service.gpt_oss.uri
}

output "openai_base_url" {
  description = "OpenAI-compatible base URL (GPT_OSS_URL)."
  value       = "${google_cloud_run_v2_service.gpt_oss.uri}/v1"
}
