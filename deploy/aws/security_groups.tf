# API host: SSH and the API from admin_cidr only; RabbitMQ and the API (its worker routes) from
# the training hosts' group only. Training hosts: SSH from admin_cidr only. Egress: anywhere.

resource "aws_security_group" "api" {
  name        = "${var.name}-api"
  description = "sweeplab API host"
  vpc_id      = local.vpc_id
  tags        = { Name = "${var.name}-api" }
}

resource "aws_security_group" "workers" {
  name        = "${var.name}-workers"
  description = "sweeplab training hosts"
  vpc_id      = local.vpc_id
  tags        = { Name = "${var.name}-workers" }
}

resource "aws_vpc_security_group_ingress_rule" "api_ssh_from_admin" {
  security_group_id = aws_security_group.api.id
  description       = "SSH from admin_cidr"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr
}

# With a domain the API is reached over HTTPS only (Caddy), so 8080 stays closed to admin_cidr.
resource "aws_vpc_security_group_ingress_rule" "api_http_from_admin" {
  count             = var.domain == null ? 1 : 0
  security_group_id = aws_security_group.api.id
  description       = "API from admin_cidr"
  ip_protocol       = "tcp"
  from_port         = 8080
  to_port           = 8080
  cidr_ipv4         = var.admin_cidr
}

resource "aws_vpc_security_group_ingress_rule" "api_https_from_admin" {
  count             = var.domain == null ? 0 : 1
  security_group_id = aws_security_group.api.id
  description       = "API over HTTPS (Caddy) from admin_cidr"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.admin_cidr
}

# Let's Encrypt checks a certificate request from addresses it does not publish: port 80 must be
# open to all for the HTTP challenge. Caddy answers there with challenges and redirects only.
resource "aws_vpc_security_group_ingress_rule" "api_acme_challenge" {
  count             = var.domain == null ? 0 : 1
  security_group_id = aws_security_group.api.id
  description       = "ACME HTTP challenge and redirect to HTTPS (Caddy)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "api_http_from_workers" {
  security_group_id            = aws_security_group.api.id
  description                  = "API worker routes from the training hosts"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.workers.id
}

resource "aws_vpc_security_group_ingress_rule" "api_amqp_from_workers" {
  security_group_id            = aws_security_group.api.id
  description                  = "RabbitMQ from the training hosts"
  ip_protocol                  = "tcp"
  from_port                    = 5672
  to_port                      = 5672
  referenced_security_group_id = aws_security_group.workers.id
}

resource "aws_vpc_security_group_ingress_rule" "workers_ssh_from_admin" {
  security_group_id = aws_security_group.workers.id
  description       = "SSH from admin_cidr"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each          = { api = aws_security_group.api.id, workers = aws_security_group.workers.id }
  security_group_id = each.value
  description       = "Anywhere (packages, the repository, Let's Encrypt)"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
