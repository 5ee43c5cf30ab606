output "api_url" {
  description = "URL of the HTTP API (the orchestrate function); call it with an identity token."
  value       = module.functions.api_url
}

output "bucket" {
  description = "The bucket (GCS_BUCKET); put the model weights under models/."
  value       = module.storage.name
}

output "model_url" {
  description = "URL of the gpt-oss service (OpenAI-compatible under /v1)."
  value       = module.gpt_oss.url
}

output "artifact_registry" {
  description = "Image prefix: push agent, gpt-oss and mcp images under it."
  value       = module.artifact_registry.url
}
