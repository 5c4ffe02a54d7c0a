terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.25"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
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
