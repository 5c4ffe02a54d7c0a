output "instance_id" {
  description = "ID of the EC2 instance running the stack (for aws ec2-instance-connect ssh)."
  value       = aws_instance.app.id
}

output "public_ip" {
  description = "Elastic IP of the instance."
  value       = aws_eip.app.public_ip
}

output "public_dns" {
  description = "Public DNS name of the Elastic IP."
  value       = aws_eip.app.public_dns
}

output "service_url" {
  description = "Base URL of the prediction service (eta serve behind the TLS proxy): /health, /ready, /predict, /model, /metrics."
  value       = "https://${aws_eip.app.public_dns}"
}

output "mlflow_url" {
  description = "MLflow UI and API through the TLS proxy (basic-auth login), reachable from admin_cidrs only."
  value       = "https://${aws_eip.app.public_dns}:5443"
}

output "grafana_url" {
  description = "Grafana dashboards through the TLS proxy, reachable from admin_cidrs only (admin password in /opt/eta/.env on the instance)."
  value       = "https://${aws_eip.app.public_dns}:3443"
}

output "bucket_name" {
  description = "S3 bucket for data, reports and MLflow artifacts (ETA_S3_BUCKET)."
  value       = aws_s3_bucket.data.bucket
}

output "bucket_arn" {
  description = "ARN of the S3 bucket."
  value       = aws_s3_bucket.data.arn
}

output "db_address" {
  description = "Host name of the RDS PostgreSQL server (POSTGRES_HOST), reachable from the instance only."
  value       = aws_db_instance.main.address
}

output "db_port" {
  description = "Port of the RDS PostgreSQL server (POSTGRES_PORT)."
  value       = aws_db_instance.main.port
}

output "db_username" {
  description = "RDS master user, owner of the mlflow and eta databases (POSTGRES_USER)."
  value       = aws_db_instance.main.username
}

output "db_password_parameter" {
  description = "Name of the SSM SecureString holding the RDS password (aws ssm get-parameter --with-decryption --name ...)."
  value       = aws_ssm_parameter.db_password.name
}

output "instance_role_arn" {
  description = "ARN of the instance's IAM role (the one bucket and the password parameter, nothing else)."
  value       = aws_iam_role.instance.arn
}

output "ssh_command" {
  description = "Shell on the instance through the EC2 Instance Connect Endpoint (no port 22 open to the internet)."
  value       = var.enable_instance_connect_endpoint ? "aws ec2-instance-connect ssh --region ${var.aws_region} --instance-id ${aws_instance.app.id} --os-user ubuntu --connection-type eice" : "Instance Connect Endpoint disabled (enable_instance_connect_endpoint = false)"
}
