variable "project_id" {
  description = "Project of the service."
  type        = string
}

variable "region" {
  description = "Region of the service."
  type        = string
}

variable "name" {
  description = "Service name (also the name tasks use for it in AGENTFLEET_MCP_SERVERS)."
  type        = string
}

variable "image" {
  description = "The MCP server image (REGION-docker.pkg.dev/PROJECT/DEPLOYMENT/mcp:TAG)."
  type        = string
}

variable "args" {
  description = "Arguments of the image's entry point."
  type        = list(string)
  default     = []
}

variable "path" {
  description = "Path of the streamable HTTP endpoint."
  type        = string
  default     = "/mcp"
}

variable "service_account" {
  description = "Service account e-mail the service runs as."
  type        = string
}

variable "max_instances" {
  description = "Most instances at once."
  type        = number
  default     = 3
}

variable "labels" {
  description = "Labels of the service and its revisions."
  type        = map(string)
  default     = {}
}
