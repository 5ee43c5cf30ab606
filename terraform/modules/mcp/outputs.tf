output "name" {
  description = "Service name (where roles/run.invoker is granted)."
  value       = google_cloud_run_v2_service.mcp.name
}

output "url" {
  description = "The MCP endpoint URL (AGENTFLEET_MCP_SERVERS value)."
  value       = "${google_cloud_run_v2_service.mcp.uri}${var.path}"
}
