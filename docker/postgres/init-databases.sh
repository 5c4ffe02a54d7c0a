#!/bin/bash
# Creates what eta needs in a PostgreSQL server, idempotently:
#   - the MLflow database ($MLFLOW_DB, default mlflow) and the monitoring database
#     ($ETA_MONITORING_DB, default eta), both owned by $POSTGRES_USER;
#   - a read-only login role for Grafana ($GRAFANA_DB_USER, password
#     $GRAFANA_DB_PASSWORD) that can read the monitoring tables, including the ones
#     eta creates later (default privileges), and nothing in the MLflow database.
#
# Runs in two places:
#   - the postgres container's first start (/docker-entrypoint-initdb.d/), where
#     psql reaches the server over its local socket as $POSTGRES_USER;
#   - against RDS from the EC2 instance (docs/deploy.md, infra/terraform user_data),
#     with PGHOST/PGPORT/PGPASSWORD/PGSSLMODE set and POSTGRES_USER the master user.
set -euo pipefail

owner="${POSTGRES_USER:?POSTGRES_USER (the owner of the databases) is required}"
mlflow_db="${MLFLOW_DB:-mlflow}"
eta_db="${ETA_MONITORING_DB:-eta}"
reader="${GRAFANA_DB_USER:-grafana_reader}"
reader_password="${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD is required}"

for name in "$owner" "$mlflow_db" "$eta_db" "$reader"; do
  if ! [[ "$name" =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
    echo "init-databases: '$name' is not a plain identifier (lowercase letters, digits, _)" >&2
    exit 2
  fi
done

run_psql() {
  local db="$1"
  shift
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$owner" --dbname "$db" "$@"
}

for db in "$mlflow_db" "$eta_db"; do
  exists=$(run_psql postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [[ "$exists" != "1" ]]; then
    echo "init-databases: creating database $db"
    run_psql postgres -c "CREATE DATABASE \"$db\" OWNER \"$owner\""
  fi
done

run_psql postgres -v reader="$reader" -v pw="$reader_password" \
  -v mlflow_db="$mlflow_db" -v eta_db="$eta_db" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'reader', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L',
              :'reader', :'pw') \gexec
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', :'mlflow_db') \gexec
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', :'eta_db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'eta_db', :'reader') \gexec
SQL

run_psql "$eta_db" -v reader="$reader" -v owner="$owner" <<'SQL'
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'reader') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'reader') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'owner', :'reader') \gexec
SQL

echo "init-databases: $mlflow_db and $eta_db ready; $reader can read $eta_db"
