# eta on AWS: one EC2 instance running the Docker Compose stack (docker/compose.yaml),
# RDS PostgreSQL for the MLflow backend store and the monitoring database, and one
# S3 bucket for data, reports and MLflow artifacts. Least privilege throughout:
# the instance role can use that one bucket and read one SSM parameter, nothing else.

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = var.name, ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  state = "available"
}

# Canonical's current Ubuntu 24.04 LTS image for this region.
data "aws_ssm_parameter" "ubuntu_ami" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

locals {
  bucket_name           = var.bucket_name != "" ? var.bucket_name : "${var.name}-${data.aws_caller_identity.current.account_id}-${var.aws_region}"
  azs                   = slice(data.aws_availability_zones.available.names, 0, 2)
  db_password           = coalesce(var.db_password, data.aws_secretsmanager_random_password.db.random_password)
  db_password_parameter = "/${var.name}/postgres/password"
}

# ---------------------------------------------------------------------------
# Network: a VPC with one public subnet (the instance) and two private subnets
# (RDS needs two zones); the private subnets have no route to the internet.
# ---------------------------------------------------------------------------
resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# The VPC's default security group allows nothing; every resource uses its own group.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${var.name}-default-unused" }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id

  tags = { Name = var.name }
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 0)
  availability_zone = local.azs[0]

  tags = { Name = "${var.name}-public" }
}

resource "aws_subnet" "private" {
  count = 2

  vpc_id            = aws_vpc.main.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 10 + count.index)
  availability_zone = local.azs[count.index]

  tags = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main.id
  }

  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

# S3 traffic from the instance stays on the AWS network (no charge for a gateway endpoint).
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${var.aws_region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.public.id]

  tags = { Name = "${var.name}-s3" }
}

# ---------------------------------------------------------------------------
# Security groups: the TLS proxy's 443 to service_cidrs, its MLflow (5443) and
# Grafana (3443) ports to admin_cidrs, 5432 on RDS only from the instance, SSH only
# through the Instance Connect Endpoint. Nothing reaches a container directly: the
# service (9696), MLflow (5000) and Grafana (3000) are bound to 127.0.0.1 on the
# instance and are reached through the proxy (docker/compose.yaml, docs/security.md).
# ---------------------------------------------------------------------------
resource "aws_security_group" "app" {
  name        = "${var.name}-app"
  description = "eta instance: TLS proxy to service_cidrs (443) and admin_cidrs (5443, 3443)"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-app" }
}

resource "aws_vpc_security_group_ingress_rule" "serve" {
  for_each = toset(var.service_cidrs)

  security_group_id = aws_security_group.app.id
  description       = "eta prediction API through the TLS proxy"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "mlflow" {
  for_each = toset(var.admin_cidrs)

  security_group_id = aws_security_group.app.id
  description       = "MLflow tracking server and UI through the TLS proxy (admins only)"
  ip_protocol       = "tcp"
  from_port         = 5443
  to_port           = 5443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "grafana" {
  for_each = toset(var.admin_cidrs)

  security_group_id = aws_security_group.app.id
  description       = "Grafana dashboards through the TLS proxy (admins only)"
  ip_protocol       = "tcp"
  from_port         = 3443
  to_port           = 3443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "app_all" {
  security_group_id = aws_security_group.app.id
  description       = "Outbound: OS and Python packages, S3, SSM, RDS"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "eta RDS PostgreSQL: reachable only from the eta instance"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-db" }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_app" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the eta instance only"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_security_group" "eice" {
  count = var.enable_instance_connect_endpoint ? 1 : 0

  name        = "${var.name}-eice"
  description = "EC2 Instance Connect Endpoint: SSH to the eta instance only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-eice" }
}

resource "aws_vpc_security_group_egress_rule" "eice_to_app" {
  count = var.enable_instance_connect_endpoint ? 1 : 0

  security_group_id            = aws_security_group.eice[0].id
  description                  = "SSH to the eta instance"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_vpc_security_group_ingress_rule" "ssh_from_eice" {
  count = var.enable_instance_connect_endpoint ? 1 : 0

  security_group_id            = aws_security_group.app.id
  description                  = "SSH only through the EC2 Instance Connect Endpoint"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.eice[0].id
}

resource "aws_ec2_instance_connect_endpoint" "main" {
  count = var.enable_instance_connect_endpoint ? 1 : 0

  subnet_id          = aws_subnet.public.id
  security_group_ids = [aws_security_group.eice[0].id]
  preserve_client_ip = false

  tags = { Name = var.name }
}

# ---------------------------------------------------------------------------
# S3 bucket: versioned, encrypted, private, TLS only.
# ---------------------------------------------------------------------------
resource "aws_s3_bucket" "data" {
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "tidy-versions-and-uploads"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

data "aws_iam_policy_document" "bucket_tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket_tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# ---------------------------------------------------------------------------
# IAM: the instance role may list the one bucket, read/write/delete its objects,
# and read the one SSM parameter holding the database password. No admin rights,
# no wildcard resources.
# ---------------------------------------------------------------------------
data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  description        = "eta EC2 instance: the one S3 bucket and the database password parameter"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

data "aws_iam_policy_document" "bucket_access" {
  statement {
    sid       = "ListTheBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }

  statement {
    sid       = "ReadWriteObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }
}

resource "aws_iam_policy" "bucket_access" {
  name        = "${var.name}-bucket-access"
  description = "List, read, write and delete objects in the eta bucket only"
  policy      = data.aws_iam_policy_document.bucket_access.json
}

resource "aws_iam_role_policy_attachment" "bucket_access" {
  role       = aws_iam_role.instance.name
  policy_arn = aws_iam_policy.bucket_access.arn
}

data "aws_iam_policy_document" "db_password" {
  statement {
    sid       = "ReadDatabasePassword"
    effect    = "Allow"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.db_password.arn]
  }
}

# Only the first boot needs the master password (to create the per-component roles
# with docker/postgres/init-databases.sh). Set instance_reads_db_password = false
# and apply again once the stack runs, and nothing on the instance can read it.
resource "aws_iam_role_policy" "db_password" {
  count = var.instance_reads_db_password ? 1 : 0

  name   = "${var.name}-db-password"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.db_password.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name
}

# ---------------------------------------------------------------------------
# RDS PostgreSQL: private, encrypted, backed up. The master password is generated
# by Secrets Manager's generator (or given as the sensitive db_password) and kept in
# an SSM SecureString. The generator answers a new value on every plan: the value
# the first apply wrote is kept (ignore_changes below); rotate it as
# docs/security.md says, not through Terraform.
# ---------------------------------------------------------------------------
data "aws_secretsmanager_random_password" "db" {
  password_length     = 32
  exclude_punctuation = true
  include_space       = false
}

resource "aws_ssm_parameter" "db_password" {
  name        = local.db_password_parameter
  description = "Master password of the eta RDS instance (read by the eta instance at first boot)"
  type        = "SecureString"
  value       = local.db_password

  lifecycle {
    ignore_changes = [value]
  }
}

resource "aws_db_subnet_group" "main" {
  name       = "${var.name}-db"
  subnet_ids = aws_subnet.private[*].id

  tags = { Name = "${var.name}-db" }
}

resource "aws_db_instance" "main" {
  identifier     = "${var.name}-db"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name  = "mlflow"
  username = var.db_username
  password = local.db_password
  port     = 5432

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  backup_retention_period    = var.db_backup_retention_days
  copy_tags_to_snapshot      = true
  auto_minor_version_upgrade = true
  deletion_protection        = var.db_deletion_protection
  skip_final_snapshot        = false
  final_snapshot_identifier  = "${var.name}-db-final"

  lifecycle {
    # The generated password is drawn again on every plan; the first one stays.
    ignore_changes = [password]
  }
}

# ---------------------------------------------------------------------------
# EC2 instance: Ubuntu, Docker and Compose from Ubuntu's archive, the stack
# started by user_data (infra/terraform/user_data.sh.tftpl).
# ---------------------------------------------------------------------------
resource "aws_eip" "app" {
  domain = "vpc"

  tags = { Name = var.name }
}

resource "aws_instance" "app" {
  ami                         = var.ami_id != "" ? var.ami_id : nonsensitive(data.aws_ssm_parameter.ubuntu_ami.value)
  instance_type               = var.instance_type
  subnet_id                   = aws_subnet.public.id
  vpc_security_group_ids      = [aws_security_group.app.id]
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  associate_public_ip_address = true
  ebs_optimized               = true

  # IMDSv2 only, and one hop: a container on a Docker bridge network (the service,
  # the proxy, Grafana) is one hop further away and cannot get the instance role.
  # Only what needs the bucket runs in the host's network namespace and reaches it:
  # MLflow (artifact proxy) and the scheduler (eta pipeline), see
  # docker/compose.aws.yaml and docs/security.md.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_gb
    encrypted   = true
  }

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    repo_url              = var.repo_url
    repo_ref              = var.repo_ref
    aws_region            = var.aws_region
    bucket_name           = aws_s3_bucket.data.bucket
    db_address            = aws_db_instance.main.address
    db_port               = aws_db_instance.main.port
    db_username           = var.db_username
    db_password_parameter = aws_ssm_parameter.db_password.name
    public_ip             = aws_eip.app.public_ip
    public_dns            = aws_eip.app.public_dns
    pipeline_at           = var.pipeline_at
  })

  tags = { Name = var.name }

  lifecycle {
    # A newer Ubuntu image must not replace a running instance on the next apply.
    ignore_changes = [ami]
  }
}

resource "aws_eip_association" "app" {
  instance_id   = aws_instance.app.id
  allocation_id = aws_eip.app.id
}
