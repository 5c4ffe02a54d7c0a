"""Create the MLflow accounts of the stack, or give them their current password.

Run by the one-shot compose service ``mlflow-users`` after the MLflow server (basic-auth
app) is healthy, as MLflow's admin (MLFLOW_AUTH_ADMIN_USERNAME / _PASSWORD):

- ETA_MLFLOW_SERVE_USER (the service): reads the registry and the champion's artifacts
  through the server's default READ permission, and nothing more;
- ETA_MLFLOW_PIPELINE_USER (the scheduler): creates its experiment and registered model,
  which makes them its own (MANAGE), so it can log runs and move aliases.

Idempotent: an existing account gets the password from the environment, so changing it
in .env and re-running ``docker compose up -d`` rotates it. Passwords only travel in the
environment and in the request bodies to the server; nothing is written to disk. Exit
codes: 0 done, 1 the server refused or could not be reached.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request

USERS_API = "/api/2.0/mlflow/users"


def call(method: str, path: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    """One JSON request as the admin; (HTTP status, decoded answer)."""
    admin = f"{os.environ['MLFLOW_AUTH_ADMIN_USERNAME']}:{os.environ['MLFLOW_AUTH_ADMIN_PASSWORD']}"
    request = urllib.request.Request(
        os.environ.get("MLFLOW_URL", "http://mlflow:5000") + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(admin.encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def ensure_user(username: str, password: str) -> None:
    """Create ``username``, or set its password when it exists already."""
    status, answer = call(
        "POST", f"{USERS_API}/create", {"username": username, "password": password}
    )
    if status == 200:
        print(f"mlflow-users: created {username}")
        return
    if answer.get("error_code") != "RESOURCE_ALREADY_EXISTS":
        raise RuntimeError(f"creating {username}: HTTP {status} {answer.get('error_code', '')}")
    status, answer = call(
        "PATCH", f"{USERS_API}/update-password", {"username": username, "password": password}
    )
    if status != 200:
        raise RuntimeError(f"updating {username}: HTTP {status} {answer.get('error_code', '')}")
    print(f"mlflow-users: {username} exists, password set")


def main() -> int:
    try:
        for role in ("SERVE", "PIPELINE"):
            ensure_user(
                os.environ[f"ETA_MLFLOW_{role}_USER"], os.environ[f"ETA_MLFLOW_{role}_PASSWORD"]
            )
    except (KeyError, RuntimeError, OSError) as exc:
        print(f"mlflow-users: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
