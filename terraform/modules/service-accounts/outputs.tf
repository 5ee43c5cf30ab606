output "emails" {
  description = "Service account e-mail by component (orchestrate, dispatch, dispatch_trigger, reap, scheduler, agent, gpt_oss, mcp, mcp_media, toolbox, build)."
  value       = { for k, sa in google_service_account.this : k => sa.email }
}

output "ids" {
  description = "Service account resource id (projects/P/serviceAccounts/E) by component."
  value       = { for k, sa in google_service_account.this : k => sa.name }
}
