terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    # 5.100 is the newest 5.x release, the one the offline test environment carries
    # (terraform init -plugin-dir). Everything here is available from 5.x; nothing
    # else is needed: the database password comes from AWS Secrets Manager's
    # generator (main.tf), not from the hashicorp/random provider.
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State holds the database password: keep it somewhere private and encrypted.
  # For a team, use a remote backend, e.g.
  #   backend "s3" {
  #     bucket       = "my-terraform-state"
  #     key          = "eta/terraform.tfstate"
  #     region       = "us-east-1"
  #     encrypt      = true
  #     use_lockfile = true
  #   }
}
