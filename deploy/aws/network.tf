# Where the hosts go: the given subnet, or a subnet of the VPC (default: the region's default VPC)
# that maps public IPs, in a zone that offers every instance type used.

data "aws_subnet" "given" {
  count = var.subnet_id == null ? 0 : 1
  id    = var.subnet_id
}

data "aws_vpc" "default" {
  count   = var.subnet_id == null && var.vpc_id == null ? 1 : 0
  default = true
}

data "aws_ec2_instance_type_offerings" "zones" {
  count         = var.subnet_id == null ? 1 : 0
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = local.instance_types
  }
}

data "aws_subnets" "candidates" {
  count = var.subnet_id == null ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [local.vpc_id]
  }

  filter {
    name   = "map-public-ip-on-launch"
    values = ["true"]
  }

  filter {
    name   = "availability-zone"
    values = local.zones_offering_all_types
  }
}

locals {
  instance_types = distinct(var.worker_count > 0 ? [var.api_instance_type, var.worker_instance_type] : [var.api_instance_type])

  offerings = one(data.aws_ec2_instance_type_offerings.zones[*])
  # The zones where every type in instance_types is offered.
  zones_offering_all_types = local.offerings == null ? [] : sort(setintersection([
    for type in local.instance_types : toset([
      for i, zone in local.offerings.locations : zone if local.offerings.instance_types[i] == type
    ])
  ]...))

  vpc_id    = var.subnet_id != null ? data.aws_subnet.given[0].vpc_id : coalesce(var.vpc_id, one(data.aws_vpc.default[*].id))
  subnet_id = var.subnet_id != null ? var.subnet_id : try(sort(data.aws_subnets.candidates[0].ids)[0], null)
}
