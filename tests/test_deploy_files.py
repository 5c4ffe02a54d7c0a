"""Checks of the deployment files: compose stack, image, aws profile, Terraform, CI.

No Docker engine and no AWS account are available here, so these tests parse the
files and check the rules the deployment relies on (pinned images, health checks,
no secrets written down, ports matching the settings, least-privilege IAM, ...).
The scheduler loop and the PostgreSQL init script are shell scripts that do run
here, so they are run for real.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from eta_cli.config import ENV_VARS, SECRET_NAME, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yaml"
COMPOSE_AWS = ROOT / "docker" / "compose.aws.yaml"
NGINX_CONF = ROOT / "docker" / "proxy" / "nginx.conf"
SELF_SIGNED = ROOT / "docker" / "proxy" / "self-signed.sh"
MLFLOW_AUTH_INI = ROOT / "docker" / "mlflow" / "basic_auth.ini"
MLFLOW_USERS = ROOT / "docker" / "mlflow" / "create-users.py"
SECURITY_DOC = ROOT / "docs" / "security.md"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEDULER = ROOT / "docker" / "scheduler" / "eta-scheduler.sh"
PG_INIT = ROOT / "docker" / "postgres" / "init-databases.sh"
ENV_EXAMPLE = ROOT / ".env.example"
AWS_PROFILE = ROOT / "configs" / "aws.toml"
TERRAFORM = ROOT / "infra" / "terraform"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

SECRET_KEY = re.compile(r"password|secret|key|token", re.IGNORECASE)
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
EXACT_TAG = re.compile(
    r"^(\d+\.\d+(\.\d+)?([.-][A-Za-z0-9.-]+)?|RELEASE\.\d{4}-\d{2}-\d{2}T[\d-]+Z)$"
)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    """NAME -> value for every assignment in .env.example (duplicates are an error)."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            assert match.group(1) not in values, f".env.example sets {match.group(1)} twice"
            values[match.group(1)] = match.group(2)
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-style interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt}.

    Defaults may nest (``${A:-${B}}``); a missing required variable raises KeyError.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            out.append(_expand(text[i + 2 : j - 1], env))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand(expr: str, env: Mapping[str, str]) -> str:
    match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", expr, re.DOTALL)
    assert match, f"cannot parse ${{{expr}}}"
    name, op, arg = match.group(1), match.group(2), match.group(3) or ""
    value = env.get(name)
    unset = value is None or (value == "" and op is not None and op.startswith(":"))
    if op in (":-", "-"):
        return interpolate(arg, env) if unset else str(value)
    if op in (":?", "?"):
        if unset:
            raise KeyError(f"{name}: {arg}")
        return str(value)
    if op in (":+", "+"):
        return "" if unset else interpolate(arg, env)
    return "" if value is None else str(value)


def compose_strings(node: Any) -> Iterator[str]:
    """Every string value of the parsed compose file (Compose interpolates values only)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from compose_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from compose_strings(value)
    elif isinstance(node, str):
        yield node


def compose_variables() -> set[str]:
    return {name for text in compose_strings(compose()) for name in VAR_REF.findall(text)}


def required_compose_variables() -> set[str]:
    pattern = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+):\?")
    return {name for text in compose_strings(compose()) for name in pattern.findall(text)}


def rendered_compose(env: Mapping[str, str]) -> dict[str, Any]:
    def render(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(value) for value in node]
        return interpolate(node, env) if isinstance(node, str) else node

    return render(compose())


def local_env() -> dict[str, str]:
    """.env.example with the required secrets filled in, as a user would."""
    env = env_example()
    for name, value in env.items():
        stack_secret = not name.startswith("ETA_") or name.endswith("_PASSWORD")
        if not value and SECRET_KEY.search(name) and stack_secret:
            env[name] = f"{name.lower().replace('_', '')}0123456789"
    return env


def port_pairs(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(published, container) for every short-syntax port mapping."""
    pairs = set()
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        if raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


HCL_OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, with_comments=False, explicit_blocks=False
)


def hcl(name: str) -> dict[str, Any]:
    with open(TERRAFORM / name, encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=HCL_OPTIONS)


def tf_blocks(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every ``resource`` or ``data`` block in the module."""
    for path in sorted(TERRAFORM.glob("*.tf")):
        for entry in hcl(path.name).get(kind, []):
            for typ, by_name in entry.items():
                for name, body in by_name.items():
                    yield typ, name, body


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a match on a parent
    folder counts; ``*`` does not cross ``/``, ``**`` does."""
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


# ---------------------------------------------------------------------------
# docker/compose.yaml
# ---------------------------------------------------------------------------
def test_compose_has_the_stack_services() -> None:
    assert {
        "postgres",
        "minio",
        "minio-init",
        "mlflow",
        "mlflow-users",
        "eta",
        "grafana",
        "scheduler",
        "proxy",
    } <= set(services())


def test_every_image_is_pinned_to_an_exact_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for name, service in services().items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        if image.startswith("${"):
            # ${ETA_IMAGE:-eta:<version>}: the locally built image, tagged with the version.
            match = re.fullmatch(r"\$\{ETA_IMAGE:-eta:([^}]+)\}", image)
            assert match, f"{name}: image {image!r} must be ${{ETA_IMAGE:-eta:<version>}}"
            assert match.group(1) == pyproject["project"]["version"], (
                f"{name}: default image tag {match.group(1)} != package version"
            )
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag not in {"latest", "stable", "main", "edge"}, f"{name}: floating tag {tag}"
        assert EXACT_TAG.match(tag), f"{name}: tag {tag!r} is not an exact version"


def test_the_eta_image_is_built_once_and_shared() -> None:
    svc = services()
    built = [name for name, s in svc.items() if "build" in s]
    assert built == ["eta"]
    assert svc["eta"]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    for name in ("mlflow", "mlflow-users", "scheduler"):
        assert svc[name]["image"] == svc["eta"]["image"], f"{name} must run the eta image"


def test_long_running_services_have_healthchecks() -> None:
    for name, service in services().items():
        if service.get("restart") == "no":
            assert "healthcheck" not in service, f"one-shot {name} needs no healthcheck"
            continue
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"
        check = service.get("healthcheck")
        assert check and check.get("test"), f"long-running service {name} has no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test form"


def test_depends_on_waits_for_health_or_completion() -> None:
    svc = services()
    for name, service in svc.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
        for dep, spec in depends.items():
            assert dep in svc, f"{name} depends on unknown service {dep}"
            expected = (
                "service_completed_successfully"
                if svc[dep].get("restart") == "no"
                else "service_healthy"
            )
            assert "healthcheck" in svc[dep] or expected != "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {dep}: {spec}"
            # Only the local stand-ins may be absent (on AWS their profile is off).
            optional = spec.get("required") is False
            dep_local = "local" in svc[dep].get("profiles", [])
            local = "local" in service.get("profiles", [])
            assert optional == (dep_local and not local), f"{name} -> {dep}: {spec}"


def test_local_stand_ins_are_behind_the_local_profile() -> None:
    svc = services()
    for name in ("postgres", "minio", "minio-init"):
        assert svc[name].get("profiles") == ["local"], name
    for name in ("mlflow", "mlflow-users", "eta", "grafana", "scheduler", "proxy"):
        assert "profiles" not in svc[name], f"{name} must run on AWS too"


def test_named_volumes_are_declared_and_used() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    used = set()
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                continue
            assert source in declared, f"{name} uses undeclared volume {source}"
            used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    assert "eta-home" in declared and "postgres-data" in declared


def test_every_compose_variable_is_documented_in_env_example() -> None:
    referenced = compose_variables()
    assert referenced, "the compose file reads no variable at all?"
    documented = set(env_example())
    assert referenced <= documented, f"not in .env.example: {sorted(referenced - documented)}"


def test_no_secret_is_written_inline() -> None:
    for name, service in services().items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            value = "" if value is None else str(value)
            if SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), (
                    f"{name}.{key} must be a ${{VAR}} reference, not {value!r}"
                )
            if "PASSWORD" in key:
                assert value.startswith("${") and ":?" in value, f"{name}.{key} must be required"
            for user_info in re.findall(r"://([^/@\s]+)@", value):
                password = user_info.split(":", 1)[1] if ":" in user_info else ""
                assert password.startswith("${") and ":?" in password, (
                    f"{name}.{key}: password in URL must be a required variable"
                )
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "an AWS access key id is written inline"


def test_ports_match_the_settings() -> None:
    svc = services()
    serve_port = Settings().serve_port
    assert serve_port == 9696
    assert port_pairs(svc["eta"]) == {(serve_port, serve_port)}
    command = svc["eta"]["command"]
    assert command[:2] == ["eta", "serve"]
    assert command[command.index("--port") + 1] == str(serve_port)
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert port_pairs(svc["mlflow"]) == {(5000, 5000)}
    assert port_pairs(svc["grafana"]) == {(3000, 3000)}
    assert f"127.0.0.1:{serve_port}/health" in " ".join(svc["eta"]["healthcheck"]["test"])


def test_mlflow_runs_on_postgresql_with_proxied_s3_artifacts() -> None:
    mlflow = services()["mlflow"]
    command = [str(part) for part in mlflow["command"]]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--port") + 1] == "5000"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://${ETA_S3_BUCKET")
    backend = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg2://${MLFLOW_DB_USER:-mlflow}:"), backend
    assert not any("postgresql" in part for part in command), "password on the command line"


def test_grafana_is_provisioned_read_only_from_docker_grafana() -> None:
    grafana = services()["grafana"]
    mounts = set(grafana["volumes"])
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_local_stack_renders_to_working_aws_settings() -> None:
    """Interpolate with .env.example (+ secrets) and load the eta service's settings."""
    env = local_env()
    rendered = rendered_compose(env)
    for name in ("eta", "scheduler"):
        container_env = {k: str(v) for k, v in rendered["services"][name]["environment"].items()}
        settings = load_settings(environ=container_env, config_dir=ROOT / "configs")
        assert settings.profile == "aws"
        assert settings.tracking_uri == "http://mlflow:5000"
        assert settings.s3_bucket == env["ETA_S3_BUCKET"]
        assert settings.effective_data_uri == f"s3://{env['ETA_S3_BUCKET']}/eta/data"
        role = {"eta": "ETA_SERVE", "scheduler": "ETA_PIPELINE"}[name]
        assert settings.effective_database_url == (
            f"postgresql+psycopg2://{env[role + '_DB_USER']}:{env[role + '_DB_PASSWORD']}"
            "@postgres:5432/eta?sslmode=disable"
        )
        assert settings.s3_endpoint_url == "http://minio:9000"
        assert settings.home_path == Path("/var/lib/eta")
        assert container_env["AWS_DEFAULT_REGION"] == container_env["AWS_REGION"]


def test_missing_secrets_stop_compose_before_anything_starts() -> None:
    env = local_env()
    for name in (
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "GRAFANA_DB_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "ETA_S3_BUCKET",
        "MLFLOW_DB_PASSWORD",
        "ETA_SERVE_DB_PASSWORD",
        "ETA_PIPELINE_DB_PASSWORD",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "ETA_MLFLOW_SERVE_PASSWORD",
        "ETA_MLFLOW_PIPELINE_PASSWORD",
    ):
        broken = dict(env, **{name: ""})
        with pytest.raises(KeyError, match=name):
            rendered_compose(broken)


def test_interpolation_helper_follows_compose_rules() -> None:
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("x${A}y$${A}", env) == "xay${A}"
    assert interpolate("${EMPTY:-d}|${MISSING-d}|${EMPTY-d}", env) == "d|d|"
    assert interpolate("${MISSING:-${A}/${B:-b}}", env) == "a/b"
    assert interpolate("${A:+on}${EMPTY:+on}", env) == "on"
    with pytest.raises(KeyError):
        interpolate("${EMPTY:?needed}", env)


def _published(entry: Any) -> tuple[str, int, int]:
    """(host address with its default, published port, container port) of a port."""
    text = interpolate(str(entry), {})
    address, published, container = text.rsplit(":", 2)
    return address, int(published), int(container)


def test_only_the_proxy_publishes_a_public_port() -> None:
    """Every port is bound to 127.0.0.1 by default, except the proxy's 443."""
    for name, service in services().items():
        for entry in service.get("ports", []):
            address, published, container = _published(entry)
            if (name, published) == ("proxy", 443):
                assert str(entry).startswith("${ETA_PUBLIC_BIND:-0.0.0.0}:"), entry
                assert container == 8443
                continue
            assert address == "127.0.0.1", f"{name} publishes {entry} beyond the host"
    svc = services()
    assert {_published(e)[1] for e in svc["proxy"]["ports"]} == {443, 5443, 3443}
    for name in ("eta", "mlflow", "grafana", "minio"):
        assert {_published(e)[0] for e in svc[name]["ports"]} == {"127.0.0.1"}, name
    for name in ("scheduler", "mlflow-users", "minio-init", "postgres"):
        assert "ports" not in svc[name], f"{name} needs no published port"


def test_evidently_ui_shows_the_workspace_the_scheduler_fills_on_loopback() -> None:
    """The evidently-ui service: the eta image, the shared workspace, 127.0.0.1 only."""
    svc = services()
    ui = svc["evidently-ui"]
    assert ui["image"] == svc["eta"]["image"]
    command = [str(part) for part in ui["command"]]
    assert command[:4] == ["python", "-m", "evidently.cli", "ui"]
    workspace = command[command.index("--workspace") + 1]
    port = int(command[command.index("--port") + 1])
    assert [_published(e) for e in ui["ports"]] == [("127.0.0.1", port, port)]
    assert ui["environment"]["DO_NOT_TRACK"] == "1"  # no telemetry from the stack
    assert f"http://127.0.0.1:{port}/" in " ".join(ui["healthcheck"]["test"])
    # The scheduler's drift reports go to the same volume, at the same path.
    scheduler = svc["scheduler"]
    assert scheduler["environment"]["ETA_WORKSPACE"] == workspace
    volume = next(v for v in ui["volumes"] if str(v).endswith(f":{workspace}"))
    assert volume in scheduler["volumes"]
    assert not any(str(v).endswith(":ro") for v in ui["volumes"])  # the UI writes its state
    assert "ETA_WORKSPACE" not in svc["eta"].get("environment", {})  # serving writes no run
    # docs/deploy.md says how to reach it: an SSH tunnel to the loopback port.
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert re.search(rf"ssh [^\n]*-L {port}:(127\.0\.0\.1|localhost):{port}", deploy)


def nginx_directives() -> list[tuple[str, list[str]]]:
    """(directive, arguments) of every simple directive of docker/proxy/nginx.conf."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text(encoding="utf-8"))
    text = re.sub(r"'[^']*'", "''", text)  # JSON bodies of `return`
    statements = re.split(r"[;{}]", text)
    return [(s.split()[0], s.split()[1:]) for s in statements if s.strip()]


def test_the_proxy_terminates_tls_and_limits_time_size_and_rate() -> None:
    directives = nginx_directives()

    def values(name: str) -> list[list[str]]:
        return [args for directive, args in directives if directive == name]

    assert values("client_header_timeout") == [["10s"]]
    assert values("client_body_timeout") == [["30s"]]
    assert values("server_tokens") == [["off"]]
    # The API's body limit is the service's own (the MLflow server allows uploads).
    assert values("client_max_body_size")[0] == [str(Settings().max_body_bytes)]
    assert f'"limit_bytes":{Settings().max_body_bytes}' in NGINX_CONF.read_text("utf-8")
    (zone,) = values("limit_req_zone")
    assert zone[0] == "$binary_remote_addr" and re.fullmatch(r"rate=\d+r/s", zone[2])
    assert values("limit_req") == [["zone=eta_api", "burst=100", "nodelay"]]
    assert values("limit_req_status") == [["429"]]
    assert ["per_client", "64"] in values("limit_conn")
    assert values("ssl_protocols") == [["TLSv1.2", "TLSv1.3"]]
    assert values("ssl_certificate") == [["/etc/nginx/tls/tls.crt"]]
    assert values("ssl_certificate_key") == [["/etc/nginx/tls/tls.key"]]
    listens = values("listen")
    assert ["8443", "ssl"] in listens and ["5443", "ssl"] in listens and ["3443", "ssl"] in listens
    assert ["127.0.0.1:8080"] in listens, "the health listener stays inside the container"
    assert [args for args in values("server") if args] == [["eta:9696"]]  # the upstream
    assert ["http://mlflow:5000"] in values("proxy_pass")
    assert ["http://grafana:3000"] in values("proxy_pass")
    # Operators' routes are not on the public port.
    text = NGINX_CONF.read_text(encoding="utf-8")
    for route in ("/reload", "/metrics"):
        assert re.search(rf"location = {route} \{{\s*return 404;", text), route
    proxy = services()["proxy"]
    assert "./proxy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert "./tls:/etc/nginx/tls:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == {"eta", "mlflow", "grafana"}
    # nginx resolves upstream names once: a recreated upstream must restart it.
    assert all(spec.get("restart") is True for spec in proxy["depends_on"].values())


def test_tls_material_is_made_on_the_host_and_never_committed(tmp_path: Path) -> None:
    ignore = (ROOT / "docker" / "tls" / ".gitignore").read_text(encoding="utf-8").split()
    assert "*" in ignore and "!.gitignore" in ignore
    assert sorted(p.name for p in (ROOT / "docker" / "tls").iterdir()) in (
        [".gitignore"],
        [".gitignore", "tls.crt", "tls.key"],
    )
    run = subprocess.run(
        ["bash", str(SELF_SIGNED), str(tmp_path / "tls"), "eta.example.com", "203.0.113.9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    key = tmp_path / "tls" / "tls.key"
    assert key.stat().st_mode & 0o077 == 0, "the private key is readable by others"
    names = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(tmp_path / "tls" / "tls.crt"),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "DNS:eta.example.com" in names and "IP Address:203.0.113.9" in names
    again = subprocess.run(
        ["bash", str(SELF_SIGNED), str(tmp_path / "tls"), "other"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "keeping it" in again.stdout


def test_mlflow_requires_a_login_configured_from_the_environment_only() -> None:
    svc = services()
    mlflow = svc["mlflow"]
    command = [str(part) for part in mlflow["command"]]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    assert "./mlflow/basic_auth.ini:/etc/mlflow/basic_auth.ini:ro" in mlflow["volumes"]
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[name].startswith(f"${{{name}:?"), name
    ini = MLFLOW_AUTH_INI.read_text(encoding="utf-8")
    assert not re.search(r"^\s*admin_password\s*=", ini, re.MULTILINE), "password in a file"
    assert re.search(r"^default_permission = READ$", ini, re.MULTILINE)
    assert re.search(r"^database_uri = sqlite:////var/lib/eta/", ini, re.MULTILINE)
    # The service and the scheduler log in with their own accounts.
    logins = {}
    for name in ("eta", "scheduler"):
        container = svc[name]["environment"]
        logins[name] = container["MLFLOW_TRACKING_USERNAME"]
        assert container["MLFLOW_TRACKING_PASSWORD"].startswith("${ETA_MLFLOW_"), name
        assert svc[name]["depends_on"]["mlflow-users"] == {
            "condition": "service_completed_successfully"
        }
    assert logins == {
        "eta": "${ETA_MLFLOW_SERVE_USER:-eta-serve}",
        "scheduler": "${ETA_MLFLOW_PIPELINE_USER:-eta-pipeline}",
    }
    users = svc["mlflow-users"]
    assert users["command"] == ["python", "/etc/mlflow/create-users.py"]
    assert "./mlflow/create-users.py:/etc/mlflow/create-users.py:ro" in users["volumes"]
    compile(MLFLOW_USERS.read_text(encoding="utf-8"), str(MLFLOW_USERS), "exec")


def test_mlflow_users_creates_the_accounts_and_resets_their_passwords() -> None:
    """docker/mlflow/create-users.py against a stand-in for MLflow's users API."""
    import base64
    import http.server
    import json
    import threading

    users: dict[str, str] = {}
    admin = "Basic " + base64.b64encode(b"admin:adminpw").decode()

    class UsersApi(http.server.BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.headers.get("Authorization") != admin:
                return self._answer(401, {"error_code": "UNAUTHENTICATED"})
            name = body["username"]
            if (method, self.path) == ("POST", "/api/2.0/mlflow/users/create"):
                if name in users:
                    return self._answer(400, {"error_code": "RESOURCE_ALREADY_EXISTS"})
            elif (method, self.path) != ("PATCH", "/api/2.0/mlflow/users/update-password"):
                return self._answer(404, {"error_code": "ENDPOINT_NOT_FOUND"})
            users[name] = body["password"]
            return self._answer(200, {"user": {"username": name}})

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UsersApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        MLFLOW_URL=f"http://127.0.0.1:{server.server_address[1]}",
        MLFLOW_AUTH_ADMIN_USERNAME="admin",
        MLFLOW_AUTH_ADMIN_PASSWORD="adminpw",
        ETA_MLFLOW_SERVE_USER="eta-serve",
        ETA_MLFLOW_SERVE_PASSWORD="s1",
        ETA_MLFLOW_PIPELINE_USER="eta-pipeline",
        ETA_MLFLOW_PIPELINE_PASSWORD="p1",
    )

    def run(**changes: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(MLFLOW_USERS)],
            env=dict(env, **changes),
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        first = run()
        assert first.returncode == 0, first.stderr
        assert users == {"eta-serve": "s1", "eta-pipeline": "p1"}
        again = run(ETA_MLFLOW_SERVE_PASSWORD="s2")  # rotation
        assert again.returncode == 0 and "password set" in again.stdout, again.stderr
        assert users == {"eta-serve": "s2", "eta-pipeline": "p1"}
        refused = run(MLFLOW_AUTH_ADMIN_PASSWORD="wrong")
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        assert "wrong" not in refused.stderr + refused.stdout
        assert "s2" not in again.stdout + again.stderr, "a password was printed"
    finally:
        server.shutdown()


def test_each_container_gets_its_own_database_role() -> None:
    rendered = rendered_compose(local_env())["services"]
    users = {}
    for name, key in (
        ("eta", "ETA_DATABASE_URL"),
        ("scheduler", "ETA_DATABASE_URL"),
        ("mlflow", "MLFLOW_BACKEND_STORE_URI"),
    ):
        users[name] = re.match(
            r"postgresql\+psycopg2://([^:]+):", rendered[name]["environment"][key]
        )[1]
    assert users == {"eta": "eta_serve", "scheduler": "eta_pipeline", "mlflow": "mlflow"}
    # Only what uses the bucket gets its keys (the service reads models through MLflow).
    for name, has_keys in (("eta", False), ("scheduler", True), ("mlflow", True)):
        keys = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(rendered[name]["environment"])
        assert bool(keys) == has_keys, name
    assert rendered["grafana"]["environment"]["MONITORING_DB_USER"] == "grafana_reader"
    assert "POSTGRES_PASSWORD" not in COMPOSE.read_text("utf-8").split("postgres:\n", 2)[-1]


def _aws_override() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(
        "!reset", lambda loader, node: {"!reset": loader.construct_sequence(node)}
    )
    return yaml.load(COMPOSE_AWS.read_text(encoding="utf-8"), Loader=Loader)


def test_on_aws_only_mlflow_and_the_scheduler_reach_the_instance_role() -> None:
    """IMDS hop limit 1: only containers in the host's network namespace get the role."""
    override = _aws_override()
    base = services()
    in_host_network = {
        name for name, s in override["services"].items() if s.get("network_mode") == "host"
    }
    assert in_host_network == {"mlflow", "scheduler"}
    assert override["services"]["mlflow"]["ports"] == {"!reset": []}
    assert set(override["services"]) <= set(base)
    (subnet,) = override["networks"]["default"]["ipam"]["config"]
    gateway = subnet["gateway"]
    template = (TERRAFORM / "user_data.sh.tftpl").read_text(encoding="utf-8")
    assert f"MLFLOW_HOST={gateway}" in template
    assert [str(p) for p in base["mlflow"]["command"]][
        [str(p) for p in base["mlflow"]["command"]].index("--host") + 1
    ] == "${MLFLOW_HOST:-0.0.0.0}"
    # Everyone that talks to MLflow finds it at the gateway.
    for name in ("mlflow", "mlflow-users", "scheduler", "eta", "proxy"):
        assert override["services"][name]["extra_hosts"] == [f"mlflow:{gateway}"], name
    for name in ("eta", "proxy", "grafana"):
        assert override["services"].get(name, {}).get("network_mode") is None, name


def test_no_secret_is_written_in_the_deployment_files() -> None:
    """Password, secret, token and key assignments in docker/, infra/ and configs/ are
    empty, variable references or generated at run time; never literals."""
    assignment = re.compile(
        r"(?i)(?<![{$\w])([A-Z0-9_]*(?:PASSWORD|SECRET|TOKEN|ACCESS_KEY)[A-Z0-9_]*)\s*[=:]\s*(\S+)"
    )
    # A literal: six or more characters with no variable, command, call or reference.
    literal = re.compile(r"^[\"']?[^\s$(){}\[\]\"'.,]{6,}[\"']?,?$")
    checked = 0
    for folder in ("docker", "infra", "configs"):
        for path in sorted((ROOT / folder).rglob("*")):
            # Python (create-users.py) passes secrets as variables; the Terraform tests'
            # mocked values are fixtures, not credentials.
            skipped = {".terraform", "tests"} & set(path.relative_to(ROOT).parts)
            if not path.is_file() or skipped or path.suffix in (".json", ".py"):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.lstrip().startswith("#"):
                    continue
                for name, value in assignment.findall(line):
                    checked += 1
                    if name == "http_tokens":  # IMDSv2 setting, not a token
                        continue
                    assert not literal.match(value) or value in ("true", "false"), (
                        f"{path.relative_to(ROOT)}:{number}: {name} = {value}"
                    )
    assert checked > 20


# ---------------------------------------------------------------------------
# docker/Dockerfile and .dockerignore
# ---------------------------------------------------------------------------
def test_dockerfile_base_image_is_pinned() -> None:
    froms = [args for op, args in dockerfile_instructions() if op == "FROM"]
    assert froms
    for args in froms:
        image = args.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


def test_dockerfile_runs_as_non_root_before_cmd() -> None:
    stage = final_stage(dockerfile_instructions())
    ops = [op for op, _ in stage]
    assert "CMD" in ops and "USER" in ops
    user = [args for op, args in stage[: ops.index("CMD")] if op == "USER"][-1]
    name = user.split(":")[0]
    assert name not in {"root", "0"}, f"final USER is {user}"


def test_dockerfile_exposes_serve_port_with_health_check_and_cmd() -> None:
    stage = final_stage(dockerfile_instructions())
    by_op: dict[str, list[str]] = {}
    for op, args in stage:
        by_op.setdefault(op, []).append(args)
    port = Settings().serve_port
    assert by_op["EXPOSE"] == [str(port)]
    (health,) = by_op["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/health" in health and "urllib" in health
    assert "curl" not in health
    assert by_op["CMD"][-1] == f'["eta", "serve", "--host", "0.0.0.0", "--port", "{port}"]'
    env = " ".join(by_op["ENV"])
    assert "ETA_HOME=/var/lib/eta" in env
    assert by_op["VOLUME"] == ['["/var/lib/eta"]']


def test_dockerfile_installs_from_the_hash_pinned_lock() -> None:
    runs = [args for op, args in dockerfile_instructions() if op == "RUN"]
    assert any(
        "pip install --no-deps --require-hashes -r requirements-runtime.lock" in r for r in runs
    )
    assert any(
        re.search(r"pip install --no-deps( --no-build-isolation)? \.(\s|$)", r) for r in runs
    )
    # Whatever else pip installs is hash-pinned too (the build backend).
    for run in runs:
        for command in re.split(r"&&|;", run):
            if "pip install" in command and "--require-hashes" not in command:
                assert re.search(r"--no-deps( --no-build-isolation)? \.\s*$", command), command


def test_dockerfile_bakes_in_no_credentials() -> None:
    for op, args in dockerfile_instructions():
        if op in ("ARG", "ENV"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            for name in names:
                assert not re.search(r"AWS_|PASSWORD|SECRET|TOKEN|KEY", name, re.IGNORECASE), (
                    f"{op} {name} would bake a credential into the image"
                )
    assert not re.search(r"AKIA[0-9A-Z]{16}", DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        ".eta/data/orders.parquet",
        "data/raw/orders.csv",
        "benchmarks/.cache/x",
        "tests/conftest.py",
        "eta_cli/__pycache__/cli.cpython-311.pyc",
        "infra/terraform/main.tf",
    ):
        assert dockerignore_excludes(path), f"{path} would be sent to the docker daemon"
    # Everything the Dockerfile copies from the context must be in it, and exist.
    for op, args in dockerfile_instructions():
        if op != "COPY" or "--from=" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not dockerignore_excludes(source.rstrip("/")), f"COPY {source} is ignored"
            if (ROOT / source).is_dir():
                for child in (ROOT / source).rglob("*.py"):
                    rel = child.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(rel), rel


# ---------------------------------------------------------------------------
# Scheduler loop and PostgreSQL init script (run for real)
# ---------------------------------------------------------------------------
def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not appear")


def test_scheduler_runs_the_pipeline_logs_it_and_stops_on_term(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "eta"
    fake.write_text('#!/bin/bash\necho "fake eta $*"\nexit 3\n', encoding="utf-8")
    fake.chmod(0o755)
    home = tmp_path / "home"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        ETA_HOME=str(home),
        ETA_PIPELINE_AT="03:15",
        ETA_PIPELINE_ON_START="1",
        ETA_PIPELINE_ARGS="--retrain --json",
        ETA_PIPELINE_INBOX=str(tmp_path / "inbox"),
    )
    proc = subprocess.Popen(
        [str(SCHEDULER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(home / "scheduler" / "last-run")
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "daily at 03:15 UTC" in out
    assert "running: eta pipeline --retrain --json" in out
    assert "eta pipeline exited with 3" in out
    assert re.search(r"next run at \d{4}-\d{2}-\d{2}T03:15:00Z", out), out
    assert "stopping" in out
    (log,) = (home / "logs" / "pipeline").glob("pipeline-*.log")
    assert log.read_text(encoding="utf-8").strip() == "fake eta pipeline --retrain --json"
    assert "rc=3" in (home / "scheduler" / "last-run").read_text(encoding="utf-8")
    assert (home / "scheduler" / "heartbeat").exists()
    assert (tmp_path / "inbox").is_dir(), "the scheduler creates the pipeline's inbox"


def test_scheduler_refuses_a_bad_time(tmp_path: Path) -> None:
    env = dict(os.environ, ETA_HOME=str(tmp_path), ETA_PIPELINE_AT="25:00")
    result = subprocess.run([str(SCHEDULER)], env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "HH:MM" in result.stderr


def test_scheduler_healthcheck_reads_the_heartbeat_the_loop_writes() -> None:
    test = " ".join(services()["scheduler"]["healthcheck"]["test"])
    assert "/var/lib/eta/scheduler/heartbeat" in test
    assert 'heartbeat="$state_dir/heartbeat"' in SCHEDULER.read_text(encoding="utf-8")
    assert 'state_dir="$home/scheduler"' in SCHEDULER.read_text(encoding="utf-8")


@pytest.mark.postgres
def test_init_script_creates_databases_and_a_read_only_grafana_role() -> None:
    """Run docker/postgres/init-databases.sh as a non-superuser owner, like RDS's master."""
    psql = shutil.which("psql")
    assert psql, "psql (PostgreSQL client) is needed to run docker/postgres/init-databases.sh"
    from conftest import PG_HOST, PG_PORT, PG_USER

    suffix = uuid.uuid4().hex[:8]
    owner, reader = f"owner_{suffix}", f"reader_{suffix}"
    mlflow_db, eta_db = f"mlflow_{suffix}", f"eta_{suffix}"

    def sql(user: str, db: str, statement: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                psql,
                "-h",
                PG_HOST,
                "-p",
                str(PG_PORT),
                "-U",
                user,
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert (
        sql(PG_USER, "postgres", f"CREATE ROLE {owner} LOGIN CREATEDB CREATEROLE").returncode == 0
    )
    env = dict(
        os.environ,
        PGHOST=PG_HOST,
        PGPORT=str(PG_PORT),
        POSTGRES_USER=owner,
        MLFLOW_DB=mlflow_db,
        ETA_MONITORING_DB=eta_db,
        GRAFANA_DB_USER=reader,
        GRAFANA_DB_PASSWORD="it's $ecret",
        MLFLOW_DB_USER=f"mlflow_{suffix}",
        MLFLOW_DB_PASSWORD="m",
        ETA_SERVE_DB_USER=f"serve_{suffix}",
        ETA_SERVE_DB_PASSWORD="s",
        ETA_PIPELINE_DB_USER=f"pipeline_{suffix}",
        ETA_PIPELINE_DB_PASSWORD="p",
    )
    try:
        for _ in range(2):  # idempotent
            run = subprocess.run(
                ["bash", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=60
            )
            assert run.returncode == 0, run.stderr
        # A table eta creates later is readable by Grafana's role, and only readable.
        assert (
            sql(
                owner,
                eta_db,
                "CREATE TABLE later_table (id int); INSERT INTO later_table VALUES (1)",
            ).returncode
            == 0
        )
        assert sql(reader, eta_db, "SELECT count(*) FROM later_table").stdout.strip() == "1"
        denied = sql(reader, eta_db, "INSERT INTO later_table VALUES (2)")
        assert denied.returncode != 0 and "permission denied" in denied.stderr
        no_mlflow = sql(reader, mlflow_db, "SELECT 1")
        assert no_mlflow.returncode != 0 and "CONNECT" in no_mlflow.stderr
        assert sql(owner, mlflow_db, "SELECT 1").stdout.strip() == "1"
    finally:
        for statement in (
            f'DROP DATABASE IF EXISTS "{mlflow_db}" WITH (FORCE)',
            f'DROP DATABASE IF EXISTS "{eta_db}" WITH (FORCE)',
            f"DROP ROLE IF EXISTS {reader}",
            f"DROP ROLE IF EXISTS serve_{suffix}",
            f"DROP ROLE IF EXISTS pipeline_{suffix}",
            f"DROP ROLE IF EXISTS mlflow_{suffix}",
            f"DROP ROLE IF EXISTS {owner}",
        ):
            sql(PG_USER, "postgres", statement)


def _pg_init_roles(suffix: str) -> dict[str, str]:
    """Role and database names of one isolated run of the init script."""
    return {
        "POSTGRES_USER": f"owner_{suffix}",
        "MLFLOW_DB": f"mlflow_{suffix}",
        "ETA_MONITORING_DB": f"eta_{suffix}",
        "GRAFANA_DB_USER": f"reader_{suffix}",
        "GRAFANA_DB_PASSWORD": "r",
        "MLFLOW_DB_USER": f"mlflowrole_{suffix}",
        "MLFLOW_DB_PASSWORD": "m",
        "ETA_SERVE_DB_USER": f"serve_{suffix}",
        "ETA_SERVE_DB_PASSWORD": "s",
        "ETA_PIPELINE_DB_USER": f"pipeline_{suffix}",
        "ETA_PIPELINE_DB_PASSWORD": "p",
    }


@pytest.fixture
def pg_roles() -> Iterator[dict[str, str]]:
    """docker/postgres/init-databases.sh run for real, as a non-superuser owner like
    RDS's master user; yields the names, drops everything afterwards."""
    import psycopg2
    from conftest import PG_HOST, PG_PORT, PG_USER

    names = _pg_init_roles(uuid.uuid4().hex[:8])
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {names['POSTGRES_USER']} LOGIN CREATEDB CREATEROLE")
    env = dict(os.environ, PGHOST=PG_HOST, PGPORT=str(PG_PORT), **names)
    try:
        run = subprocess.run(
            ["bash", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        yield dict(names, host=PG_HOST, port=str(PG_PORT))
    finally:
        with admin.cursor() as cur:
            for db in ("MLFLOW_DB", "ETA_MONITORING_DB"):
                cur.execute(f'DROP DATABASE IF EXISTS "{names[db]}" WITH (FORCE)')
            for role in (
                "GRAFANA_DB_USER",
                "MLFLOW_DB_USER",
                "ETA_SERVE_DB_USER",
                "ETA_PIPELINE_DB_USER",
                "POSTGRES_USER",
            ):
                cur.execute(f"DROP ROLE IF EXISTS {names[role]}")
        admin.close()


def _as_role(pg: dict[str, str], role: str, db: str, statement: str) -> str:
    """Run one statement as ``role`` in ``db``: 'ok' or the error's first line."""
    import psycopg2

    try:
        conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=role, dbname=db)
    except psycopg2.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
        return "ok"
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0]
    finally:
        conn.close()


@pytest.mark.postgres
def test_the_service_role_may_only_append_to_the_prediction_log(
    pg_roles: dict[str, str],
) -> None:
    """eta serve's real writer logs through its role; reading, deleting, dropping fail."""
    import numpy as np

    from eta_cli.serve.prediction_log import LogEntry, PredictionLog

    serve, eta_db = pg_roles["ETA_SERVE_DB_USER"], pg_roles["ETA_MONITORING_DB"]
    url = f"postgresql+psycopg2://{serve}@{pg_roles['host']}:{pg_roles['port']}/{eta_db}"
    log = PredictionLog(url, 100).start()
    record = {"market_id": 1, "created_at": "2015-02-06 22:24:17"}
    values = np.array([[1.0, 2.0, 3.0, 2.5]])
    log.submit(LogEntry("req-1", time.time(), "eta", "1", 3.0, [record], ["o-1"], values))
    assert log.flush(20)
    log.close()
    assert log.stats()["written"] == 1 and log.stats()["errors"] == 0
    owner = pg_roles["POSTGRES_USER"]
    assert _as_role(pg_roles, owner, eta_db, "SELECT 1 FROM predictions") == "ok"
    for statement in (
        "SELECT * FROM predictions",
        "DELETE FROM predictions",
        "UPDATE predictions SET model_version = 'x'",
        "TRUNCATE predictions",
        "SELECT * FROM drift_reports",
        "INSERT INTO drift_columns (report_id, column_name, method, drift_score, drifted)"
        " VALUES (1, 'c', 'm', 0.1, false)",
    ):
        assert "permission denied" in _as_role(pg_roles, serve, eta_db, statement), statement
    for statement in ("DROP TABLE predictions", "ALTER TABLE predictions ADD COLUMN x int"):
        assert "must be owner" in _as_role(pg_roles, serve, eta_db, statement), statement
    assert "permission denied for schema public" in _as_role(
        pg_roles, serve, eta_db, "CREATE TABLE mine (x int)"
    )
    mlflow_db = pg_roles["MLFLOW_DB"]
    assert "permission denied for database" in _as_role(pg_roles, serve, mlflow_db, "SELECT 1")


@pytest.mark.postgres
def test_the_pipeline_role_reads_the_log_and_writes_drift_results(
    pg_roles: dict[str, str],
) -> None:
    """What `eta pipeline` / `eta drift-report` do through SQLAlchemy works; DDL and
    deleting do not."""
    import sqlalchemy as sa

    from eta_cli.monitor import database as monitoring

    pipeline, eta_db = pg_roles["ETA_PIPELINE_DB_USER"], pg_roles["ETA_MONITORING_DB"]
    url = f"postgresql+psycopg2://{pipeline}@{pg_roles['host']}:{pg_roles['port']}/{eta_db}"
    engine = monitoring.make_engine(url)
    try:
        monitoring.ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(sa.select(monitoring.predictions.c.request_id)).all()
            report_id = conn.execute(
                monitoring.drift_reports.insert()
                .values(
                    created_at=sa.func.now(),
                    reference_rows=1,
                    current_rows=1,
                    sampled_rows=1,
                    drifted_columns=0,
                    total_columns=1,
                    drift_share=0.0,
                    dataset_drift=False,
                )
                .returning(monitoring.drift_reports.c.id)
            ).scalar_one()
            conn.execute(
                monitoring.drift_columns.insert().values(
                    report_id=report_id, column_name="c", method="m", drift_score=0.1, drifted=False
                )
            )
            conn.execute(
                monitoring.drift_reports.update()
                .where(monitoring.drift_reports.c.id == report_id)
                .values(html_uri="s3://b/r.html")
            )
    finally:
        engine.dispose()
    for statement in (
        "DELETE FROM drift_reports",
        "DELETE FROM predictions",
        "INSERT INTO eta_schema_version VALUES (2, now())",
    ):
        assert "permission denied" in _as_role(pg_roles, pipeline, eta_db, statement), statement
    assert "must be owner" in _as_role(pg_roles, pipeline, eta_db, "DROP TABLE predictions")
    mlflow_db = pg_roles["MLFLOW_DB"]
    assert "permission denied for database" in _as_role(pg_roles, pipeline, mlflow_db, "SELECT 1")


@pytest.mark.postgres
def test_mlflow_owns_its_database_and_nothing_else(pg_roles: dict[str, str]) -> None:
    mlflow, mlflow_db = pg_roles["MLFLOW_DB_USER"], pg_roles["MLFLOW_DB"]
    assert _as_role(pg_roles, mlflow, mlflow_db, "CREATE TABLE runs (x int)") == "ok"
    assert _as_role(pg_roles, mlflow, mlflow_db, "DROP TABLE runs") == "ok"
    eta_db = pg_roles["ETA_MONITORING_DB"]
    assert "permission denied for database" in _as_role(pg_roles, mlflow, eta_db, "SELECT 1")
    reader = pg_roles["GRAFANA_DB_USER"]
    assert _as_role(pg_roles, reader, eta_db, "SELECT count(*) FROM predictions") == "ok"
    assert "permission denied" in _as_role(pg_roles, reader, eta_db, "DELETE FROM predictions")


@pytest.mark.postgres
def test_the_init_script_creates_the_schema_eta_defines(
    pg_roles: dict[str, str], pg_url: str
) -> None:
    """The tables the script creates are the ones eta_cli/monitor/database.py creates
    itself (compared with a database made by ``ensure_schema``): columns, types,
    nullability, defaults, keys and indexes, at the same schema version."""
    import sqlalchemy as sa

    from eta_cli.monitor import database as monitoring

    def shape(engine: sa.Engine) -> dict[str, Any]:
        inspector = sa.inspect(engine)
        return {
            name: (
                [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(name)
                ],
                inspector.get_pk_constraint(name)["constrained_columns"],
                sorted(
                    (fk["constrained_columns"], fk["referred_table"], fk.get("options"))
                    for fk in inspector.get_foreign_keys(name)
                ),
                sorted((i["name"], i["column_names"]) for i in inspector.get_indexes(name)),
            )
            for name in sorted(inspector.get_table_names())
        }

    owner, eta_db = pg_roles["POSTGRES_USER"], pg_roles["ETA_MONITORING_DB"]
    by_script = sa.create_engine(
        f"postgresql+psycopg2://{owner}@{pg_roles['host']}:{pg_roles['port']}/{eta_db}"
    )
    by_eta = monitoring.make_engine(pg_url)
    try:
        monitoring.ensure_schema(by_eta)
        assert set(shape(by_script)) == set(monitoring.metadata.tables)
        assert shape(by_script) == shape(by_eta)
        assert monitoring.current_schema_version(by_script) == monitoring.SCHEMA_VERSION
    finally:
        by_script.dispose()
        by_eta.dispose()


def test_init_script_is_mounted_into_the_postgres_container() -> None:
    postgres = services()["postgres"]
    assert (
        "./postgres/init-databases.sh:/docker-entrypoint-initdb.d/10-init-databases.sh:ro"
        in postgres["volumes"]
    )
    for name in (
        "MLFLOW_DB",
        "ETA_MONITORING_DB",
        "GRAFANA_DB_USER",
        "GRAFANA_DB_PASSWORD",
        "MLFLOW_DB_USER",
        "MLFLOW_DB_PASSWORD",
        "ETA_SERVE_DB_USER",
        "ETA_SERVE_DB_PASSWORD",
        "ETA_PIPELINE_DB_USER",
        "ETA_PIPELINE_DB_PASSWORD",
    ):
        assert name in postgres["environment"], name
    assert os.access(PG_INIT, os.X_OK) and os.access(SCHEDULER, os.X_OK)


# ---------------------------------------------------------------------------
# configs/aws.toml and .env.example
# ---------------------------------------------------------------------------
def test_aws_profile_loads_and_holds_no_per_deployment_value() -> None:
    data = tomllib.loads(AWS_PROFILE.read_text(encoding="utf-8"))["eta"]
    settings = load_settings(profile="aws", environ={}, config_dir=ROOT / "configs")
    assert settings.profile == "aws"
    assert settings.tracking_uri.startswith("http://")
    assert settings.serve_port == Settings().serve_port
    # Bucket, data lake, database URL (with its password) and credentials come from
    # the environment, never from the file.
    for name in (
        "s3_bucket",
        "data_uri",
        "database_url",
        "registry_uri",
        "s3_endpoint_url",
        "alert_webhook",
    ):
        assert not data.get(name), f"{name} is per deployment: set it in the environment"
    for name, value in data.items():
        if SECRET_NAME.search(name):
            assert not value, f"{name} holds a secret"
        if isinstance(value, str):
            assert "@" not in value, f"{name} looks like a URL with credentials"
    terraform_region = hcl("variables.tf")["variable"]
    (region,) = [v["aws_region"]["default"] for v in terraform_region if "aws_region" in v]
    assert data["aws_region"] == region
    assert data["home"] == "/var/lib/eta"


def test_every_aws_profile_key_has_a_comment() -> None:
    lines = AWS_PROFILE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            assert lines[index - 1].startswith("#"), f"no comment above {line!r}"


def test_every_setting_variable_is_documented_in_env_example() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    documented = env_example()
    for names in ENV_VARS.values():
        for name in names:
            assert name in documented, f"{name} (eta_cli.config.ENV_VARS) not in .env.example"
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert lines[index - 1].startswith("# "), f"no one-line comment above {line!r}"


def test_variables_the_aws_profile_relies_on_are_documented() -> None:
    used = set(re.findall(r"\b((?:ETA|MLFLOW|AWS)_[A-Z0-9_]+)", AWS_PROFILE.read_text("utf-8")))
    for name in ("eta", "scheduler"):
        used |= {k for k in services()[name]["environment"] if k != "AWS_DEFAULT_REGION"}
    missing = used - set(env_example())
    assert not missing, f"not in .env.example: {sorted(missing)}"


def test_env_example_holds_no_secret_values() -> None:
    for name, value in env_example().items():
        if re.search(r"PASSWORD|SECRET|TOKEN|WEBHOOK", name):
            assert value == "", f"{name} has a value in .env.example"


# ---------------------------------------------------------------------------
# infra/terraform
# ---------------------------------------------------------------------------
def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform") or "/usr/local/bin/terraform"
    assert Path(terraform).exists(), (
        "terraform is not installed: it is needed for `terraform fmt -check` "
        "(CI installs it with hashicorp/setup-terraform)"
    )
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}"


def test_terraform_files_parse_and_document_variables_and_outputs() -> None:
    for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
        assert (TERRAFORM / name).is_file(), name
    for entry in hcl("variables.tf")["variable"]:
        for name, body in entry.items():
            assert len(body.get("description", "")) > 15, f"variable {name} needs a description"
    outputs = {name for entry in hcl("outputs.tf")["output"] for name in entry}
    for entry in hcl("outputs.tf")["output"]:
        for name, body in entry.items():
            assert body.get("description"), f"output {name} needs a description"
    assert {"instance_id", "public_ip", "bucket_name", "db_address", "service_url"} <= outputs
    admin = next(e["admin_cidrs"] for e in hcl("variables.tf")["variable"] if "admin_cidrs" in e)
    assert "default" not in admin, "admin_cidrs must be chosen by whoever deploys"
    service = next(
        e["service_cidrs"] for e in hcl("variables.tf")["variable"] if "service_cidrs" in e
    )
    assert "default" not in service, "service_cidrs must be chosen by whoever deploys"


def test_terraform_providers_are_pinned() -> None:
    terraform = hcl("versions.tf")["terraform"][0]
    assert terraform["required_version"]
    providers = terraform["required_providers"][0]
    assert providers["aws"]["source"] == "hashicorp/aws"
    for name, spec in providers.items():
        assert re.fullmatch(r"(~> |= )?\d+\.\d+(\.\d+)?", spec["version"]), (name, spec)


def test_security_groups_open_only_the_service_and_admin_ports() -> None:
    rules = {
        name: body
        for typ, name, body in tf_blocks("resource")
        if typ == "aws_vpc_security_group_ingress_rule"
    }
    # Only the TLS proxy's ports: 443 (the API), 5443 (MLflow) and 3443 (Grafana).
    allowed = {
        443: ("cidr_ipv4", "${each.value}", "${toset(var.service_cidrs)}", "app"),
        5443: ("cidr_ipv4", "${each.value}", "${toset(var.admin_cidrs)}", "app"),
        3443: ("cidr_ipv4", "${each.value}", "${toset(var.admin_cidrs)}", "app"),
        5432: ("referenced_security_group_id", "${aws_security_group.app.id}", None, "db"),
        22: ("referenced_security_group_id", "${aws_security_group.eice[0].id}", None, "app"),
    }
    seen = set()
    for name, rule in rules.items():
        port = rule["from_port"]
        assert port == rule["to_port"] and rule["ip_protocol"] == "tcp", name
        assert port in allowed, f"ingress rule {name} opens port {port}"
        key, source, for_each, group = allowed[port]
        assert rule.get(key) == source, f"{name}: port {port} from {rule}"
        assert rule.get("for_each") == for_each, name
        assert rule["security_group_id"] == f"${{aws_security_group.{group}.id}}", name
        assert "cidr_ipv4" not in rule or key == "cidr_ipv4", name
        seen.add(port)
    assert {443, 5443, 3443, 5432} <= seen
    for typ, name, body in tf_blocks("resource"):
        assert typ != "aws_security_group_rule", f"{name}: use aws_vpc_security_group_*_rule"
        if typ == "aws_security_group":
            assert "ingress" not in body, f"{name}: inline ingress"
        if typ == "aws_default_security_group":
            assert "ingress" not in body and "egress" not in body


def test_iam_is_scoped_to_the_bucket_and_nothing_is_admin() -> None:
    docs = {name: body for typ, name, body in tf_blocks("data") if typ == "aws_iam_policy_document"}
    bucket = docs["bucket_access"]["statement"]
    arn = "${aws_s3_bucket.data.arn}"
    grants = {(tuple(s["actions"]), tuple(s["resources"])) for s in bucket}
    assert grants == {
        (("s3:ListBucket",), (arn,)),
        (("s3:GetObject", "s3:PutObject", "s3:DeleteObject"), (f"{arn}/*",)),
    }
    for name, doc in docs.items():
        for statement in as_list(doc.get("statement")):
            if statement.get("effect", "Allow") != "Allow":
                continue
            for resource in statement.get("resources", []):
                assert resource != "*" and not resource.endswith(":*"), (name, resource)
            for action in statement.get("actions", []):
                assert "*" not in action, f"{name}: wildcard action {action}"
    attached = [
        body["policy_arn"]
        for typ, _, body in tf_blocks("resource")
        if typ == "aws_iam_role_policy_attachment"
    ]
    assert attached == ["${aws_iam_policy.bucket_access.arn}"]
    text = "".join(p.read_text(encoding="utf-8") for p in TERRAFORM.glob("*.tf"))
    for forbidden in ("AdministratorAccess", "PowerUserAccess", "FullAccess", "IAMFullAccess"):
        assert forbidden not in text, forbidden
    policy_doc = {
        name: body
        for typ, name, body in tf_blocks("resource")
        if typ in ("aws_iam_policy", "aws_iam_role_policy")
    }
    assert policy_doc["bucket_access"]["policy"] == (
        "${data.aws_iam_policy_document.bucket_access.json}"
    )
    assert docs["db_password"]["statement"][0]["resources"] == [
        "${aws_ssm_parameter.db_password.arn}"
    ]


def test_rds_is_private_encrypted_and_its_password_is_not_written_down() -> None:
    (db,) = [b for t, _, b in tf_blocks("resource") if t == "aws_db_instance"]
    assert db["publicly_accessible"] is False
    assert db["storage_encrypted"] is True
    assert db["engine"] == "postgres"
    assert db["vpc_security_group_ids"] == ["${aws_security_group.db.id}"]
    assert db["password"].startswith("${"), "password must come from a variable or generator"
    variables = {n: b for e in hcl("variables.tf")["variable"] for n, b in e.items()}
    assert variables["db_password"]["sensitive"] is True
    assert variables["db_password"]["default"] is None


def test_s3_bucket_is_private_versioned_and_encrypted() -> None:
    resources = {(t, n): b for t, n, b in tf_blocks("resource")}
    block = resources[("aws_s3_bucket_public_access_block", "data")]
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[flag] is True, flag
    versioning = as_list(
        resources[("aws_s3_bucket_versioning", "data")]["versioning_configuration"]
    )[0]
    assert versioning["status"] == "Enabled"
    sse = resources[("aws_s3_bucket_server_side_encryption_configuration", "data")]
    rule = as_list(sse["rule"])[0]
    assert as_list(rule["apply_server_side_encryption_by_default"])[0]["sse_algorithm"]


def test_instance_uses_its_profile_imdsv2_and_a_complete_user_data_template() -> None:
    (instance,) = [b for t, _, b in tf_blocks("resource") if t == "aws_instance"]
    assert instance["iam_instance_profile"] == "${aws_iam_instance_profile.instance.name}"
    metadata = as_list(instance["metadata_options"])[0]
    assert metadata["http_tokens"] == "required"
    # One hop: containers on a bridge network cannot reach the instance role.
    assert metadata["http_put_response_hop_limit"] == 1
    assert as_list(instance["root_block_device"])[0]["encrypted"] is True
    # Every ${...} placeholder of the template is passed by templatefile(), and back.
    main = (TERRAFORM / "main.tf").read_text(encoding="utf-8")
    call = re.search(r'templatefile\("\$\{path\.module\}/(.+?)", \{(.*?)\}\)', main, re.DOTALL)
    assert call, "user_data must be rendered with templatefile()"
    passed = set(re.findall(r"^\s*(\w+)\s*=", call.group(2), re.MULTILINE))
    template = (TERRAFORM / call.group(1)).read_text(encoding="utf-8")
    placeholders = set(re.findall(r"(?<!\$)\$\{(\w+)\}", template))
    assert placeholders == passed, placeholders ^ passed


def test_user_data_installs_docker_writes_every_required_variable_and_starts_the_stack() -> None:
    template = (TERRAFORM / "user_data.sh.tftpl").read_text(encoding="utf-8")
    assert re.search(r"apt-get install .*docker\.io.*docker-compose-v2", template)
    assert (
        "docker compose -f docker/compose.yaml -f docker/compose.aws.yaml --env-file .env up -d"
        in template
    )
    assert "init-databases.sh" in template
    env_file = re.search(r"<<ENV\n(.*?)\nENV\n", template, re.DOTALL)
    assert env_file, "user_data must write .env with a <<ENV heredoc"
    written = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", env_file.group(1), re.MULTILINE))
    required = required_compose_variables()
    assert required <= written, f"compose would refuse to start: {sorted(required - written)}"
    assert written <= set(env_example()), sorted(written - set(env_example()))
    assert re.search(r"^COMPOSE_PROFILES=$", env_file.group(1), re.MULTILINE)
    assert re.search(r"^AWS_ACCESS_KEY_ID=$", env_file.group(1), re.MULTILINE)
    assert "POSTGRES_SSLMODE=require" in env_file.group(1)
    # The master password is read in the host's network namespace (IMDS, one hop) and
    # never written to .env; every component gets its own generated password.
    assert re.search(r"docker run --rm --network host .*\n.*ssm", template)
    assert "$DB_PASSWORD" not in env_file.group(1)
    for name in (
        "MLFLOW_DB_PASSWORD",
        "ETA_SERVE_DB_PASSWORD",
        "ETA_PIPELINE_DB_PASSWORD",
        "GRAFANA_DB_PASSWORD",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "ETA_MLFLOW_SERVE_PASSWORD",
        "ETA_MLFLOW_PIPELINE_PASSWORD",
    ):
        assert re.search(rf"^{name}=\$\(openssl rand -hex \d+\)$", env_file.group(1), re.M), name


def test_offline_terraform_tests_exist() -> None:
    text = (TERRAFORM / "tests" / "plan.tftest.hcl").read_text(encoding="utf-8")
    assert 'mock_provider "aws"' in text and "expect_failures = [var.admin_cidrs]" in text
    assert "expect_failures = [var.service_cidrs]" in text


# ---------------------------------------------------------------------------
# .github/workflows/ci.yml and docs/deploy.md
# ---------------------------------------------------------------------------
def test_ci_workflow_lints_tests_with_postgres_and_builds_the_image_on_tags() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert "pull_request" in triggers
    assert triggers["push"]["tags"] == ["v*"]
    jobs = workflow["jobs"]

    def runs(job: dict[str, Any]) -> str:
        return "\n".join(step.get("run", "") for step in job["steps"])

    assert any("make lint" in runs(job) for job in jobs.values())
    (test_job,) = [job for job in jobs.values() if "make test" in runs(job)]
    postgres = test_job["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in postgres["ports"]
    (image_job,) = [
        job
        for job in jobs.values()
        if any("docker/build-push-action" in s.get("uses", "") for s in job["steps"])
    ]
    assert "refs/tags/v" in image_job["if"]
    (build,) = [s for s in image_job["steps"] if "build-push-action" in s.get("uses", "")]
    assert build["with"]["file"] == "docker/Dockerfile" and build["with"]["context"] == "."
    for job in jobs.values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@(v\d+|[0-9a-f]{40})$", step["uses"]), step["uses"]


def test_deploy_guide_refers_to_things_that_exist() -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    outputs = {name for entry in hcl("outputs.tf")["output"] for name in entry}
    for name in re.findall(r"terraform output -raw (\w+)", text):
        assert name in outputs, f"docs/deploy.md uses unknown output {name}"
    variables = {n for e in hcl("variables.tf")["variable"] for n in e}
    for name in re.findall(r"-var '?(\w+)=", text) + re.findall(r"TF_VAR_(\w+)", text):
        assert name in variables, f"docs/deploy.md sets unknown variable {name}"
    for command in (
        "docker compose -f docker/compose.yaml --env-file .env up -d",
        "terraform apply",
        "eta doctor",
        "eta register --promote",
        "eta pipeline",
        "9696",
        "5000",
        "3000",
        "9001",
    ):
        assert command in text, command


def test_security_guide_covers_exposure_token_proxy_roles_and_imds() -> None:
    raw = SECURITY_DOC.read_text(encoding="utf-8")
    text = " ".join(raw.replace("**", "").split())
    for needle in (
        "ETA_ADMIN_TOKEN",
        "constant time",
        "Rotate it",
        "client_header_timeout",
        "limit_req",
        "client_max_body_size",
        "hop limit of 1",
        "Still out of scope",
        "service_cidrs",
    ):
        assert needle in text, needle
    for port in ("443", "5443", "3443", "9696", "5000", "3000"):
        assert f"| {port} |" in raw, port
    env = env_example()
    for role in (
        env["ETA_SERVE_DB_USER"],
        env["ETA_PIPELINE_DB_USER"],
        env["MLFLOW_DB_USER"],
        env["GRAFANA_DB_USER"],
    ):
        assert f"`{role}`" in text, role
    assert "security.md" in DEPLOY_DOC.read_text(encoding="utf-8")


def _pinned(lock: Path) -> dict[str, set[tuple[str, frozenset[str]]]]:
    """name -> {(version, hashes)} of a hash-pinned pip export (one per marker set)."""
    text = lock.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, set[tuple[str, frozenset[str]]]] = {}
    for line in text.splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            hashes = frozenset(re.findall(r"--hash=(\S+)", line))
            pins.setdefault(name, set()).add((match[2], hashes))
    return pins


def test_image_lock_is_the_runtime_part_of_the_dev_lock() -> None:
    runtime = _pinned(ROOT / "requirements-runtime.lock")
    full = _pinned(ROOT / "requirements.lock")
    for name in ("mlflow", "evidently", "xgboost", "flask", "waitress", "psycopg2-binary", "bokeh"):
        assert name in runtime, name
    for name, pins in runtime.items():
        assert full.get(name) == pins, f"{name}: the two exports of poetry.lock disagree"
        assert all(hashes for _, hashes in pins), f"{name}: not hash-pinned"
    for tool in ("pytest", "pytest-timeout", "ruff", "moto", "python-hcl2"):
        assert tool in full and tool not in runtime, tool
