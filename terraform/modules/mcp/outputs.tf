output "name" {
  description = "Service name (where the iam module grants roles/run.invoker to the agent)."
  value       = google_cloud_run_v2_service.mcp.name
}

output "url" {
  description = "The MCP endpoint on the service's deterministic run.app URL (the AGENTFLEET_MCP_SERVERS value)."
  value       = "https://${google_cloud_run_v2_service.mcp.name}-${data.google_project.this.number}.${var.region}.run.app${var.path}"
}

output "host" {
  description = "The deterministic run.app host of the service (what host_flag passes to the server)."
  value       = local.host
}
