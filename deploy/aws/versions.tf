terraform {
  # 1.9: a variable's validation may name other variables (the secrets and worker_count).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project    = "sweeplab"
      Deployment = var.name
    }
  }
}
