# Offline plan checks with mocked providers: no AWS account or credentials needed.
#   cd infra/terraform && terraform init -backend=false && terraform test
# (tests/test_terraform.py runs them from a copy of the module, with the provider
# from a local plugin directory.)
mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{}" }
  }
  mock_data "aws_secretsmanager_random_password" {
    defaults = { random_password = "MockedGeneratedPassword0123456789" }
  }
}

variables {
  admin_cidrs   = ["203.0.113.7/32"]
  service_cidrs = ["198.51.100.0/24"]
  repo_url      = "https://github.com/example/eta.git"
}

run "defaults_plan" {
  command = plan

  assert {
    condition     = aws_db_instance.main.publicly_accessible == false && aws_db_instance.main.storage_encrypted
    error_message = "RDS must be private and encrypted."
  }

  assert {
    condition     = aws_instance.app.metadata_options[0].http_tokens == "required" && aws_instance.app.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "The instance must require IMDSv2 with a hop limit of 1 (containers on a bridge network must not reach the instance role)."
  }

  assert {
    condition     = aws_s3_bucket.data.bucket == "eta-123456789012-us-east-1"
    error_message = "The default bucket name is <name>-<account>-<region>."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.serve) == 1 && aws_vpc_security_group_ingress_rule.serve["198.51.100.0/24"].from_port == 443
    error_message = "The proxy's 443 is open to service_cidrs, and only to them."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.mlflow["203.0.113.7/32"].from_port == 5443 && aws_vpc_security_group_ingress_rule.grafana["203.0.113.7/32"].from_port == 3443
    error_message = "The proxy's MLflow (5443) and Grafana (3443) ports are open to admin_cidrs only."
  }

  assert {
    condition     = aws_s3_bucket_public_access_block.data.block_public_acls && aws_s3_bucket_public_access_block.data.restrict_public_buckets
    error_message = "The bucket must block public access."
  }
}

run "refuses_admin_ports_open_to_the_world" {
  command = plan

  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_cidrs]
}

run "refuses_a_password_that_breaks_urls" {
  command = plan

  variables {
    db_password = "has@special/chars"
  }

  expect_failures = [var.db_password]
}

run "service_cidrs_must_be_chosen" {
  command = plan

  variables {
    service_cidrs = []
  }

  expect_failures = [var.service_cidrs]
}

run "the_master_password_policy_can_be_dropped_after_the_first_boot" {
  command = plan

  variables {
    instance_reads_db_password = false
  }

  assert {
    condition     = length(aws_iam_role_policy.db_password) == 0
    error_message = "instance_reads_db_password = false must remove the instance's access to the master password."
  }
}
