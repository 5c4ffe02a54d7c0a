#!/bin/bash
# Creates what eta needs in a PostgreSQL server, idempotently, with one login role
# per component and only the rights that component uses (docs/security.md):
#   - $MLFLOW_DB_USER (default mlflow) owns the MLflow database ($MLFLOW_DB, default
#     mlflow) and nothing else: MLflow creates and migrates its own tables there;
#   - the monitoring database ($ETA_MONITORING_DB, default eta) and its tables are
#     owned by $POSTGRES_USER (the administrator; schema changes are made as it);
#   - $ETA_SERVE_DB_USER (default eta_serve), the internet-facing `eta serve`, may
#     only INSERT into the prediction log (plus USAGE on its id sequence and SELECT on
#     eta_schema_version, which the writer reads to see that the schema exists);
#   - $ETA_PIPELINE_DB_USER (default eta_pipeline), `eta pipeline` / `eta
#     drift-report` in the scheduler, reads the prediction log and writes the drift
#     tables (INSERT, UPDATE; no DELETE, no DDL);
#   - $GRAFANA_DB_USER (default grafana_reader) reads the monitoring tables, including
#     the ones created later (default privileges), and nothing in the MLflow database.
# Every role's password is set on every run: change it in .env, run this again and
# restart the container that uses it to rotate it.
#
# The monitoring tables are created here (CREATE TABLE IF NOT EXISTS), in the same
# shape as eta_cli/monitor/database.py (schema version 1; a test compares the two),
# because the service's role cannot create them and must find them in place.
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
mlflow_user="${MLFLOW_DB_USER:-mlflow}"
mlflow_password="${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is required}"
serve_user="${ETA_SERVE_DB_USER:-eta_serve}"
serve_password="${ETA_SERVE_DB_PASSWORD:?ETA_SERVE_DB_PASSWORD is required}"
pipeline_user="${ETA_PIPELINE_DB_USER:-eta_pipeline}"
pipeline_password="${ETA_PIPELINE_DB_PASSWORD:?ETA_PIPELINE_DB_PASSWORD is required}"

for name in "$owner" "$mlflow_db" "$eta_db" "$reader" "$mlflow_user" "$serve_user" \
  "$pipeline_user"; do
  if ! [[ "$name" =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
    echo "init-databases: '$name' is not a plain identifier (lowercase letters, digits, _)" >&2
    exit 2
  fi
done

run_psql() {
  local db="$1"
  shift
  PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$owner" --dbname "$db" "$@"
}

# Login roles, created once, their passwords set on every run.
login_role() {
  run_psql postgres -v role="$1" -v pw="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L',
              :'role', :'pw') \gexec
SQL
}
login_role "$reader" "$reader_password"
login_role "$mlflow_user" "$mlflow_password"
login_role "$serve_user" "$serve_password"
login_role "$pipeline_user" "$pipeline_password"

# The owner must be a member of the MLflow role to hand it the database (RDS's master
# user is not a superuser).
run_psql postgres -v owner="$owner" -v mlflow_user="$mlflow_user" <<'SQL'
SELECT format('GRANT %I TO %I', :'mlflow_user', :'owner')
WHERE NOT pg_has_role(:'owner', :'mlflow_user', 'MEMBER') \gexec
SQL

for pair in "$mlflow_db:$mlflow_user" "$eta_db:$owner"; do
  db="${pair%%:*}"
  db_owner="${pair#*:}"
  exists=$(run_psql postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [[ "$exists" != "1" ]]; then
    echo "init-databases: creating database $db"
    run_psql postgres -c "CREATE DATABASE \"$db\" OWNER \"$db_owner\""
  else
    run_psql postgres -c "ALTER DATABASE \"$db\" OWNER TO \"$db_owner\""
  fi
done

run_psql postgres -v mlflow_db="$mlflow_db" -v eta_db="$eta_db" -v reader="$reader" \
  -v serve="$serve_user" -v pipeline="$pipeline_user" <<'SQL'
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'mlflow_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'eta_db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I',
              :'eta_db', :'reader', :'serve', :'pipeline') \gexec
SQL

# In the MLflow database nobody but its owner may create anything (PostgreSQL < 15
# lets every role create in public).
run_psql "$mlflow_db" -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC"

# The monitoring schema (eta_cli/monitor/database.py, version 2) and the grants.
run_psql "$eta_db" -v reader="$reader" -v owner="$owner" -v serve="$serve_user" \
  -v pipeline="$pipeline_user" <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE TABLE IF NOT EXISTS eta_schema_version (
  version SERIAL NOT NULL,
  applied_at TIMESTAMP WITH TIME ZONE NOT NULL,
  PRIMARY KEY (version)
);
INSERT INTO eta_schema_version (version, applied_at)
SELECT 2, now() WHERE NOT EXISTS (SELECT 1 FROM eta_schema_version);

CREATE TABLE IF NOT EXISTS predictions (
  id BIGSERIAL NOT NULL,
  request_id VARCHAR(64) NOT NULL,
  order_id VARCHAR(64),
  predicted_at TIMESTAMP WITH TIME ZONE NOT NULL,
  order_created_at TIMESTAMP WITHOUT TIME ZONE,
  model_name VARCHAR(200) NOT NULL,
  model_version VARCHAR(50) NOT NULL,
  eta_p10_s FLOAT NOT NULL,
  eta_p50_s FLOAT NOT NULL,
  eta_p90_s FLOAT NOT NULL,
  eta_quoted_s FLOAT NOT NULL,
  latency_ms FLOAT NOT NULL,
  features JSON NOT NULL,
  role VARCHAR(20) DEFAULT 'champion' NOT NULL,
  PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_predictions_request_id ON predictions (request_id);
CREATE INDEX IF NOT EXISTS ix_predictions_order_id ON predictions (order_id);
CREATE INDEX IF NOT EXISTS ix_predictions_predicted_at ON predictions (predicted_at);

CREATE TABLE IF NOT EXISTS drift_reports (
  id BIGSERIAL NOT NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL,
  model_name VARCHAR(200),
  model_version VARCHAR(50),
  reference_rows INTEGER NOT NULL,
  current_rows INTEGER NOT NULL,
  sampled_rows INTEGER NOT NULL,
  drifted_columns INTEGER NOT NULL,
  total_columns INTEGER NOT NULL,
  drift_share FLOAT NOT NULL,
  dataset_drift BOOLEAN NOT NULL,
  prediction_drift_score FLOAT,
  prediction_drifted BOOLEAN,
  mae_s FLOAT,
  interval_coverage FLOAT,
  lateness_rate FLOAT,
  html_uri TEXT,
  json_uri TEXT,
  PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_drift_reports_created_at ON drift_reports (created_at);

CREATE TABLE IF NOT EXISTS drift_columns (
  id BIGSERIAL NOT NULL,
  report_id BIGINT NOT NULL,
  column_name VARCHAR(200) NOT NULL,
  method VARCHAR(100) NOT NULL,
  drift_score FLOAT NOT NULL,
  threshold FLOAT,
  drifted BOOLEAN NOT NULL,
  PRIMARY KEY (id),
  FOREIGN KEY (report_id) REFERENCES drift_reports (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_drift_columns_report_id ON drift_columns (report_id);

CREATE TABLE IF NOT EXISTS live_evaluations (
  id BIGSERIAL NOT NULL,
  evaluated_at TIMESTAMP WITH TIME ZONE NOT NULL,
  window_start TIMESTAMP WITH TIME ZONE NOT NULL,
  model_name VARCHAR(200) NOT NULL,
  predictions INTEGER NOT NULL,
  joined_orders INTEGER NOT NULL,
  champion_version VARCHAR(50),
  challenger_version VARCHAR(50),
  paired_orders INTEGER NOT NULL,
  mae_difference_s FLOAT,
  ci_low_s FLOAT,
  ci_high_s FLOAT,
  winner VARCHAR(20) NOT NULL,
  promoted BOOLEAN NOT NULL,
  PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_live_evaluations_evaluated_at ON live_evaluations (evaluated_at);

CREATE TABLE IF NOT EXISTS live_quality (
  id BIGSERIAL NOT NULL,
  evaluation_id BIGINT NOT NULL,
  evaluated_at TIMESTAMP WITH TIME ZONE NOT NULL,
  model_version VARCHAR(50) NOT NULL,
  role VARCHAR(20) NOT NULL,
  orders INTEGER NOT NULL,
  mae_s FLOAT NOT NULL,
  interval_coverage FLOAT NOT NULL,
  lateness_rate FLOAT NOT NULL,
  bias_s FLOAT NOT NULL,
  PRIMARY KEY (id),
  FOREIGN KEY (evaluation_id) REFERENCES live_evaluations (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_live_quality_evaluation_id ON live_quality (evaluation_id);
CREATE INDEX IF NOT EXISTS ix_live_quality_evaluated_at ON live_quality (evaluated_at);

SELECT format('GRANT USAGE ON SCHEMA public TO %I, %I, %I',
              :'reader', :'serve', :'pipeline') \gexec

-- The service: append to the prediction log, nothing else.
SELECT format('GRANT SELECT ON eta_schema_version TO %I', :'serve') \gexec
SELECT format('GRANT INSERT ON predictions TO %I', :'serve') \gexec
SELECT format('GRANT USAGE ON SEQUENCE predictions_id_seq TO %I', :'serve') \gexec

-- The pipeline: read the prediction log, write drift and live-evaluation results.
SELECT format('GRANT SELECT ON eta_schema_version, predictions TO %I', :'pipeline') \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE ON drift_reports, drift_columns TO %I',
              :'pipeline') \gexec
SELECT format('GRANT USAGE ON SEQUENCE drift_reports_id_seq, drift_columns_id_seq TO %I',
              :'pipeline') \gexec
SELECT format('GRANT SELECT, INSERT ON live_evaluations, live_quality TO %I', :'pipeline') \gexec
SELECT format('GRANT USAGE ON SEQUENCE live_evaluations_id_seq, live_quality_id_seq TO %I',
              :'pipeline') \gexec

-- Grafana: read everything in the monitoring database, now and later.
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'reader') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'owner', :'reader') \gexec
SQL

echo "init-databases: $mlflow_db (owner $mlflow_user) and $eta_db ready;" \
  "$serve_user appends predictions, $pipeline_user writes drift results, $reader reads"
