# The API host and the training hosts. Each runs scripts/provision.sh from cloud-init at its first
# boot (templates/). Terraform never replaces a host because the user data changed (a new
# repo_ref), a newer Debian image came out or the chosen subnet changed: the API host's disk holds
# the data. To upgrade, re-run provision.sh at the new ref (README.md); to move a host,
# `terraform apply -replace=...`.

data "aws_ami" "debian" {
  count       = var.ami == null ? 1 : 0
  owners      = ["136693071363"] # Debian
  most_recent = true

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

locals {
  ami = var.ami != null ? var.ami : data.aws_ami.debian[0].id

  # Without training hosts the API host trains too.
  api_role = var.worker_count > 0 ? "api" : "all"

  # Workers reach the API and RabbitMQ at the API host's private address, inside the VPC.
  api_private_url = "http://${aws_instance.api.private_ip}:8080"
  broker_url      = var.rabbitmq_password == null ? null : "amqp://sweeplab:${var.rabbitmq_password}@${aws_instance.api.private_ip}:5672/sweeplab"

  # Every value the user data puts on a command line, single-quoted for the shell (a ' inside
  # becomes '\'').
  api_args = {
    repo_url        = var.repo_url
    repo_ref        = var.repo_ref
    role            = local.api_role
    domain          = var.domain
    worker_token    = var.worker_token
    broker_password = var.rabbitmq_password
  }
  worker_args = {
    repo_url     = var.repo_url
    repo_ref     = var.repo_ref
    api_url      = local.api_private_url
    broker_url   = local.broker_url
    worker_token = var.worker_token
  }
  api_user_data = templatefile("${path.module}/templates/api.sh.tftpl", {
    for k, v in local.api_args : k => v == null ? null : "'${replace(v, "'", "'\\''")}'"
  })
  # Rendered only with workers: without them the secrets may be null.
  worker_user_data = var.worker_count == 0 ? null : templatefile("${path.module}/templates/worker.sh.tftpl", {
    for k, v in local.worker_args : k => v == null ? null : "'${replace(v, "'", "'\\''")}'"
  })
}

resource "aws_instance" "api" {
  ami                    = local.ami
  instance_type          = var.api_instance_type
  subnet_id              = local.subnet_id
  vpc_security_group_ids = [aws_security_group.api.id]
  key_name               = var.key_name
  user_data              = local.api_user_data

  root_block_device {
    volume_type = "gp3"
    volume_size = var.api_volume_gb
    encrypted   = true
  }

  # IMDSv2 only. Any process on the host can still read the user data, which holds the secrets.
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = { Name = "${var.name}-api" }

  lifecycle {
    ignore_changes = [ami, user_data, subnet_id]

    precondition {
      condition     = local.subnet_id != null
      error_message = "No subnet found that maps public IPs in a zone offering ${join(", ", local.instance_types)}: give subnet_id."
    }
  }
}

# A fixed public address: api_url and token_command survive a stop and start, and a domain's A
# record stays right.
resource "aws_eip" "api" {
  domain   = "vpc"
  instance = aws_instance.api.id
  tags     = { Name = "${var.name}-api" }
}

resource "aws_instance" "worker" {
  count                  = var.worker_count
  ami                    = local.ami
  instance_type          = var.worker_instance_type
  subnet_id              = local.subnet_id
  vpc_security_group_ids = [aws_security_group.workers.id]
  key_name               = var.key_name
  user_data              = local.worker_user_data

  root_block_device {
    volume_type = "gp3"
    volume_size = var.worker_volume_gb
    encrypted   = true
  }

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = { Name = "${var.name}-worker-${count.index + 1}" }

  lifecycle {
    ignore_changes = [ami, user_data, subnet_id]
  }
}
