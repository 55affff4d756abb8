variable "region" {
  description = "AWS region, e.g. eu-west-1."
  type        = string
}

variable "name" {
  description = "Name of this deployment: prefixes the instances' and security groups' names (two deployments in one VPC need two names)."
  type        = string
  default     = "sweeplab"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, starting with a letter, at most 31 characters."
  }
}

variable "admin_cidr" {
  description = "The only IPv4 range that reaches SSH and the API (e.g. your address: 203.0.113.7/32)."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.admin_cidr))
    error_message = "admin_cidr: an IPv4 CIDR block, e.g. 203.0.113.7/32."
  }
}

variable "repo_url" {
  description = "The git repository the hosts clone (https:// or ssh://; reachable from the hosts without credentials)."
  type        = string

  validation {
    condition     = can(regex("^(https|ssh|git)://[^[:space:]]+$", var.repo_url))
    error_message = "repo_url: an https://, ssh:// or git:// URL without spaces."
  }
}

variable "repo_ref" {
  description = "The branch, tag or commit the hosts check out."
  type        = string
  default     = "main"

  validation {
    # Never starts with a dash: git would read it as an option.
    condition     = can(regex("^[A-Za-z0-9_.][A-Za-z0-9_./-]*$", var.repo_ref))
    error_message = "repo_ref: a branch, tag or commit (letters, digits, . _ / -), not starting with a dash."
  }
}

variable "ami" {
  description = "AMI for every host; null looks up the newest official Debian 12 amd64 image (owner 136693071363). Another AMI must be Debian or Ubuntu with cloud-init, for the instance types' architecture."
  type        = string
  default     = null

  validation {
    condition     = var.ami == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami))
    error_message = "ami: an AMI id (ami-…) or null."
  }
}

variable "ssh_user" {
  description = "The AMI's login user (admin on Debian, ubuntu on Ubuntu), for token_command."
  type        = string
  default     = "admin"
}

variable "key_name" {
  description = "EC2 key pair for SSH to every host; null: no key (then token_command cannot log in)."
  type        = string
  default     = null
}

variable "api_instance_type" {
  description = "Instance type of the API host (API, RabbitMQ, database, data directory)."
  type        = string
  default     = "t3.micro"
}

variable "api_volume_gb" {
  description = "Root volume of the API host in GiB: the system, the Python environment, and the data directory (images, run folders, models)."
  type        = number
  default     = 30

  validation {
    condition     = var.api_volume_gb >= 10
    error_message = "api_volume_gb: at least 10."
  }
}

variable "worker_count" {
  description = "Number of training hosts. 0: the API host trains too (provision.sh --role all)."
  type        = number
  default     = 0

  validation {
    condition     = var.worker_count >= 0 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count: a whole number, 0 or more."
  }
}

variable "worker_instance_type" {
  description = "Instance type of each training host."
  type        = string
  default     = "t3.large"
}

variable "worker_volume_gb" {
  description = "Root volume of each training host in GiB: the system, the Python environment, an image cache and the runs' working folders."
  type        = number
  default     = 30

  validation {
    condition     = var.worker_volume_gb >= 10
    error_message = "worker_volume_gb: at least 10."
  }
}

variable "domain" {
  description = "Optional DNS name of the API host: Caddy serves HTTPS for it (point its A record at the output api_public_ip). Null: plain HTTP on port 8080. Only without training hosts for now."
  type        = string
  default     = null

  validation {
    condition     = var.domain == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain))
    error_message = "domain: a lower-case DNS name such as sweeplab.example.com, or null."
  }

  validation {
    # provision.sh --domain keeps the API on 127.0.0.1 behind Caddy, and the training hosts reach
    # it at the API host's private address: they would find nothing there.
    condition     = var.domain == null || var.worker_count == 0
    error_message = "domain: not with worker_count > 0 (yet): provision.sh --domain keeps the API on 127.0.0.1, out of the training hosts' reach."
  }
}

variable "vpc_id" {
  description = "VPC to use; null: the region's default VPC (ignored when subnet_id is given)."
  type        = string
  default     = null
}

variable "subnet_id" {
  description = "Subnet for every host; it must give instances a route to the internet (the hosts clone the repository and install packages). Null: a subnet of the VPC that maps public IPs, in a zone that offers the instance types."
  type        = string
  default     = null
}

# The two secrets the workers share with the API host. Terraform's random provider is not
# installed here, so they come from you (e.g. `openssl rand -hex 32`, each); the API host is
# provisioned with them instead of generating its own. Without workers they may stay null: the
# API host then generates both. They end up in the instances' user data and in the Terraform
# state: keep the state private.
variable "worker_token" {
  description = "SWEEPLAB_WORKER_TOKEN shared by the API host and the training hosts; required when worker_count > 0."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.worker_token == null ? var.worker_count == 0 : can(regex("^[A-Za-z0-9_-]{32,256}$", var.worker_token))
    error_message = "worker_token: required when worker_count > 0; 32 to 256 of A-Z a-z 0-9 _ - (e.g. `openssl rand -hex 32`)."
  }
}

variable "rabbitmq_password" {
  description = "Password of the RabbitMQ user sweeplab (vhost sweeplab) on the API host, used by the training hosts; required when worker_count > 0."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.rabbitmq_password == null ? var.worker_count == 0 && var.worker_token == null : can(regex("^[A-Za-z0-9_-]{32,256}$", var.rabbitmq_password)) && var.worker_token != null && var.rabbitmq_password != var.worker_token
    error_message = "rabbitmq_password: required when worker_count > 0, given with worker_token or not at all, and not equal to it; 32 to 256 of A-Z a-z 0-9 _ - (e.g. `openssl rand -hex 32`)."
  }
}
