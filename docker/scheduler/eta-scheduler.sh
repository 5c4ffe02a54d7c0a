#!/bin/bash
# The stack's scheduler: runs `eta pipeline` once a day at ETA_PIPELINE_AT (HH:MM, UTC).
#
# A plain loop instead of cron: it runs as the image's non-root user, inherits the
# container's environment (cron would need it written to a file, secrets included),
# logs to stdout (`docker compose logs scheduler`) and to one file per run under
# $ETA_HOME/logs/pipeline/, and needs nothing beyond bash and coreutils.
# Overlapping runs are prevented by `eta pipeline`'s own lock; this loop never starts
# a run while the previous one is still going.
#
# Environment:
#   ETA_PIPELINE_AT         daily run time, HH:MM in UTC (default 02:30)
#   ETA_PIPELINE_ARGS       arguments for `eta pipeline` (default none), e.g. --upload-s3
#   ETA_PIPELINE_INBOX      folder of new order files, read by `eta pipeline` (created here)
#   ETA_PIPELINE_ON_START   1 to also run once right after the container starts
#   ETA_PIPELINE_LOG_DAYS   days to keep per-run log files (default 30)
set -uo pipefail

at="${ETA_PIPELINE_AT:-02:30}"
read -r -a args <<< "${ETA_PIPELINE_ARGS:-}"
home="${ETA_HOME:-/var/lib/eta}"
log_dir="$home/logs/pipeline"
state_dir="$home/scheduler"
heartbeat="$state_dir/heartbeat"
keep_days="${ETA_PIPELINE_LOG_DAYS:-30}"
child=""
sleeper=""

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) scheduler: $*"; }

if ! [[ "$at" =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]]; then
  say "ETA_PIPELINE_AT=$at is not a time of day; use HH:MM (UTC), e.g. 02:30" >&2
  exit 2
fi
if ! [[ "$keep_days" =~ ^[0-9]+$ ]]; then
  say "ETA_PIPELINE_LOG_DAYS=$keep_days is not a number of days" >&2
  exit 2
fi
mkdir -p "$log_dir" "$state_dir" ${ETA_PIPELINE_INBOX:+"$ETA_PIPELINE_INBOX"} || exit 1
touch "$heartbeat"

# Sleep in the background so that TERM is handled at once (and the sleep ended too).
nap() {
  sleep "$1" &
  sleeper=$!
  wait "$sleeper"
  sleeper=""
}

stop() {
  say "stopping"
  if [[ -n "$sleeper" ]]; then
    kill "$sleeper" 2>/dev/null
  fi
  if [[ -n "$child" ]]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT

# Seconds since the epoch of the next HH:MM (UTC) strictly after now.
next_run() {
  local now next
  now=$(date -u +%s)
  next=$(date -u -d "today $at" +%s)
  if (( next <= now )); then
    next=$(date -u -d "tomorrow $at" +%s)
  fi
  echo "$next"
}

run_pipeline() {
  local stamp log_file rc
  stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
  log_file="$log_dir/pipeline-$stamp.log"
  say "running: eta pipeline${args[*]:+ ${args[*]}} (log $log_file)"
  # eta is the direct child (its output goes through tee), so TERM reaches it.
  eta pipeline "${args[@]}" > >(tee "$log_file") 2>&1 &
  child=$!
  # Keep the heartbeat fresh while a long run (training) is going.
  while kill -0 "$child" 2>/dev/null; do
    touch "$heartbeat"
    nap 5
  done
  wait "$child"
  rc=$?
  child=""
  say "eta pipeline exited with $rc"
  echo "$stamp rc=$rc log=$log_file" > "$state_dir/last-run"
  find "$log_dir" -name 'pipeline-*.log' -type f -mtime +"$keep_days" -delete
}

say "eta pipeline runs daily at $at UTC"
if [[ "${ETA_PIPELINE_ON_START:-0}" == "1" ]]; then
  run_pipeline
fi
while true; do
  next=$(next_run)
  say "next run at $(date -u -d "@$next" +%Y-%m-%dT%H:%M:%SZ)"
  while (( $(date -u +%s) < next )); do
    touch "$heartbeat"
    left=$(( next - $(date -u +%s) ))
    (( left > 60 )) && left=60
    (( left < 1 )) && left=1
    nap "$left"
  done
  run_pipeline
done
