variable "aws_region" {
  description = "AWS region for every resource. Must match aws_region in configs/aws.toml (or set AWS_REGION in the instance's .env)."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix for every resource (VPC, instance, database, IAM role, SSM parameter)."
  type        = string
  default     = "eta"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to reach MLflow (5443) and Grafana (3443) through the TLS proxy, e.g. [\"203.0.113.7/32\"]. Required; 0.0.0.0/0 is refused."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs must be a non-empty list of valid CIDR blocks, none of them 0.0.0.0/0 (admin interfaces are not for the internet)."
  }
}

variable "service_cidrs" {
  description = "CIDR blocks allowed to call the prediction service (HTTPS on 443, through the proxy), e.g. your clients' egress addresses. Required: [\"0.0.0.0/0\"] opens it to everyone, which has to be written down on purpose."
  type        = list(string)

  validation {
    condition     = length(var.service_cidrs) > 0 && alltrue([for c in var.service_cidrs : can(cidrhost(c, 0))])
    error_message = "service_cidrs must be a non-empty list of valid CIDR blocks."
  }
}

variable "vpc_cidr" {
  description = "Address range of the VPC created for eta (one public subnet for the instance, two private subnets for RDS)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a valid CIDR block, e.g. 10.42.0.0/16."
  }
}

variable "instance_type" {
  description = "EC2 instance type. It runs MLflow, eta serve, Grafana and the nightly training; 8 GiB of memory is a comfortable minimum."
  type        = string
  default     = "t3.large"
}

variable "root_volume_gb" {
  description = "Size of the instance's encrypted gp3 root volume in GiB (Docker images, ETA_HOME scratch, logs)."
  type        = number
  default     = 40
}

variable "ami_id" {
  description = "AMI for the instance. Empty: the current Ubuntu 24.04 LTS amd64 image published by Canonical (read from SSM Parameter Store); the user_data script expects Ubuntu (apt)."
  type        = string
  default     = ""
}

variable "repo_url" {
  description = "Git URL the instance clones to build and run the stack, e.g. https://github.com/your-org/eta.git (must be readable without credentials)."
  type        = string
}

variable "repo_ref" {
  description = "Branch or tag of repo_url to deploy, e.g. v0.1.0. The image is built from it on the instance."
  type        = string
  default     = "main"
}

variable "bucket_name" {
  description = "Name of the S3 bucket for data, reports and MLflow artifacts. Empty: <name>-<account id>-<region>."
  type        = string
  default     = ""
}

variable "bucket_force_destroy" {
  description = "Allow terraform destroy to delete the bucket with everything in it. Keep false in production."
  type        = bool
  default     = false
}

variable "noncurrent_version_days" {
  description = "Days after which overwritten or deleted object versions are removed from the versioned bucket."
  type        = number
  default     = 90
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL server (MLflow backend store and monitoring database)."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "PostgreSQL major version for RDS; minor versions are upgraded automatically."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  description = "Initial RDS storage in GiB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Upper limit in GiB for RDS storage autoscaling."
  type        = number
  default     = 100
}

variable "db_username" {
  description = "RDS master user, owner of the mlflow and eta databases (POSTGRES_USER in the instance's .env)."
  type        = string
  default     = "eta"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,30}$", var.db_username))
    error_message = "db_username must start with a letter and use lowercase letters, digits and '_'."
  }
}

variable "db_password" {
  description = "RDS master password. Leave null to have Terraform generate one. Letters and digits only (it goes into connection URLs). Stored as an SSM SecureString that only the instance role can read."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.db_password == null || can(regex("^[A-Za-z0-9]{16,64}$", var.db_password))
    error_message = "db_password must be 16-64 letters and digits."
  }
}

variable "db_multi_az" {
  description = "Run RDS in Multi-AZ mode (a standby in a second zone; doubles the database cost)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated RDS backups (point-in-time recovery window)."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Refuse to delete the RDS instance (set false before terraform destroy)."
  type        = bool
  default     = true
}

variable "instance_reads_db_password" {
  description = "Let the instance role read the RDS master password parameter. The first boot needs it (it creates the per-component database roles); set false and apply again afterwards."
  type        = bool
  default     = true
}

variable "enable_instance_connect_endpoint" {
  description = "Create an EC2 Instance Connect Endpoint so admins get a shell (aws ec2-instance-connect ssh) without opening port 22 to the internet."
  type        = bool
  default     = true
}

variable "pipeline_at" {
  description = "Time of the nightly eta pipeline run, HH:MM in UTC (ETA_PIPELINE_AT in the instance's .env)."
  type        = string
  default     = "02:30"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.pipeline_at))
    error_message = "pipeline_at must be HH:MM (UTC), e.g. 02:30."
  }
}
