output "api_url" {
  description = "The API's base URL (the dashboard at /, the API under /api/v1)."
  value       = var.domain != null ? "https://${var.domain}" : "http://${aws_eip.api.public_ip}:8080"
}

output "token_command" {
  description = "Prints the API token once the API host is provisioned (waits for cloud-init first)."
  value       = "ssh ${var.ssh_user}@${aws_eip.api.public_ip} \"sudo cloud-init status --wait >/dev/null; sudo sed -n 's/^SWEEPLAB_API_TOKEN=//p' /etc/sweeplab/sweeplab.env\""
}

output "api_public_ip" {
  description = "The API host's public address (an Elastic IP): SSH, and the A record of domain."
  value       = aws_eip.api.public_ip
}

output "api_private_ip" {
  description = "The API host's address inside the VPC, the one the training hosts use."
  value       = aws_instance.api.private_ip
}

output "worker_private_ips" {
  description = "The training hosts' addresses inside the VPC."
  value       = aws_instance.worker[*].private_ip
}

output "worker_public_ips" {
  description = "The training hosts' public addresses, if the subnet gives them one (SSH from admin_cidr)."
  value       = aws_instance.worker[*].public_ip
}
