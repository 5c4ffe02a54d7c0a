"""Doctor's artifact store and S3 bucket checks: each writes and deletes a probe object."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eta_cli import config, tracking
from eta_cli.config import Settings
from eta_cli.doctor.outcome import (
    NOT_APPLICABLE,
    NOT_RUN,
    PASS,
    PROBE_DIR,
    PROBE_TIMEOUT_S,
    Failed,
    Verdict,
    env_name,
    scheme_of,
)
from eta_cli.errors import first_line


def _normalise_location(location: str) -> str:
    location = location.rstrip("/")
    scheme = scheme_of(location)
    if scheme in ("", "file"):
        path = unquote(urlsplit(location).path) if scheme == "file" else location
        return Path(path).expanduser().resolve().as_uri()
    return location


def _aws_credentials_source(settings: Settings) -> str:
    if settings.aws_profile:
        return f"AWS_PROFILE={settings.aws_profile}"
    if config.aws_keys_in_environment():
        return "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    return "the instance profile or ~/.aws"


def _probe_s3(settings: Settings, target: Any, what: str) -> str:
    """Write and delete ``<prefix>/.eta-doctor/<uuid>``; name the failure precisely."""
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    from eta_cli import storage

    bucket = target.bucket
    prefix = target.key.strip("/")
    key = target.child(PROBE_DIR, uuid.uuid4().hex).key
    place = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    subject = f"{what} {place}"
    where = settings.s3_endpoint_url or f"AWS S3 ({settings.aws_region or 'default region'})"
    client = storage.s3_client(
        settings,
        config=Config(
            connect_timeout=PROBE_TIMEOUT_S,
            read_timeout=PROBE_TIMEOUT_S,
            retries={"mode": "standard", "total_max_attempts": 2},
        ),
    )
    step = "write"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"eta doctor probe; safe to delete\n")
        step = "delete"
        client.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        leftover = f" (remove s3://{bucket}/{key} by hand)" if step == "delete" else ""
        if code in ("NoSuchBucket", "404", "NotFound"):
            raise Failed(
                f"{subject}: bucket {bucket!r} does not exist at {where}",
                "create the bucket (Terraform on AWS, minio-init locally) or fix the bucket name",
            ) from exc
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            raise Failed(
                f"{subject}: access denied to {step} s3://{bucket}/{key} at {where}{leftover}",
                f"the AWS credentials ({_aws_credentials_source(settings)}) need s3:PutObject "
                f"and s3:DeleteObject on arn:aws:s3:::{bucket}/*",
            ) from exc
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            raise Failed(
                f"{subject}: S3 at {where} rejected the credentials ({code})",
                f"check {_aws_credentials_source(settings)}; on EC2 leave the keys empty "
                "so the instance profile is used",
            ) from exc
        message = error.get("Message") or first_line(exc)
        raise Failed(
            f"{subject}: cannot {step} s3://{bucket}/{key} at {where}: {code} {message}{leftover}",
            "check the bucket and the credentials",
        ) from exc
    except NoCredentialsError as exc:
        raise Failed(
            f"{subject}: no AWS credentials found",
            "use the EC2 instance profile, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (the local MinIO stack)",
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        if settings.s3_endpoint_url:
            hint = (
                f"is the S3-compatible server at {settings.s3_endpoint_url} running "
                "(AWS_ENDPOINT_URL_S3; local stack: MinIO)? On AWS leave it empty"
            )
        else:
            hint = "check this machine's route to S3 (NAT or VPC endpoint) and AWS_REGION"
        raise Failed(f"{subject}: cannot reach S3 at {where}: {first_line(exc)}", hint) from exc
    except BotoCoreError as exc:
        raise Failed(
            f"{subject}: S3 at {where} failed: {first_line(exc)}", "check the AWS settings"
        ) from exc
    return f"wrote and deleted a probe object under {place}/{PROBE_DIR}/ ({where})"


def _probe_folder(path: Path, what: str, env: str) -> str:
    if not path.is_dir():
        raise Failed(f"{what} {path} does not exist", f"create it or fix {env}")
    probe = path / PROBE_DIR / uuid.uuid4().hex
    try:
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(b"eta doctor probe; safe to delete\n")
        probe.unlink()
    except OSError as exc:
        raise Failed(
            f"cannot write to {what} {path}: {exc.strerror or exc}",
            "check the folder's owner and permissions (the image runs as uid 10001)",
        ) from exc
    with contextlib.suppress(OSError):  # another doctor's probe may still be in there
        probe.parent.rmdir()
    return f"wrote and deleted a probe file in {path}"


def _probe_mlflow_repository(settings: Settings, root: str) -> str:
    """Through MLflow itself, for roots doctor cannot write directly (mlflow-artifacts:/)."""
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    tracking.client_for(settings)  # mlflow-artifacts:/ resolves against the tracking URI
    name = uuid.uuid4().hex
    with tracking.fast_http(), tempfile.TemporaryDirectory(prefix="eta-doctor-") as tmp:
        local = Path(tmp) / name
        local.write_bytes(b"eta doctor probe; safe to delete\n")
        try:
            repository = get_artifact_repository(root)
            repository.log_artifact(str(local), PROBE_DIR)
            repository.delete_artifacts(f"{PROBE_DIR}/{name}")
        except Exception as exc:
            raise Failed(
                f"artifact store {root}: cannot write and delete through MLflow: {first_line(exc)}",
                "a server behind mlflow-artifacts:/ must run with --serve-artifacts and reach "
                "its artifact destination (see its logs)",
            ) from exc
    return f"wrote and deleted a probe under {root}/{PROBE_DIR}/ through MLflow"


def check_artifact_store(settings: Settings, experiment: Any) -> Verdict:
    """Write and delete a probe where the experiment keeps its artifacts.

    ``experiment`` is what the tracking check found (None when tracking failed: then the
    configured location is probed, if there is one).
    """
    from eta_cli import storage

    env = env_name("artifact_location")
    if experiment is not None:
        root = experiment.artifact_location or ""
        wanted = settings.artifact_location
        if wanted and _normalise_location(wanted) != _normalise_location(root):
            raise Failed(
                f"experiment {settings.experiment_name!r} keeps its artifacts in {root}, not in "
                f"{wanted} ({settings.sources.get('artifact_location', 'setting')}): MLflow "
                "fixes an experiment's artifact location when it is created",
                f"use a new experiment ({env_name('experiment_name')}=...) or unset {env}",
            )
    elif settings.effective_artifact_location:
        root = settings.effective_artifact_location  # tracking failed; the location is known
    else:
        return Verdict(
            NOT_RUN,
            "the tracking server chooses the artifact location, and it did not answer",
            "fix the MLflow tracking row first",
        )
    if not root:
        raise Failed(
            f"experiment {settings.experiment_name!r} has no artifact location",
            f"create a new experiment ({env_name('experiment_name')}=...)",
        )
    scheme = scheme_of(root)
    if storage.is_s3(root):
        detail = _probe_s3(settings, storage.parse_s3(root), "artifact store")
    elif scheme in ("", "file"):
        path = Path(unquote(urlsplit(root).path)) if scheme == "file" else Path(root)
        derived = settings.effective_artifact_location
        default = not settings.artifact_location
        if (
            default
            and _normalise_location(root) == _normalise_location(derived)
            and not path.exists()  # under ETA_HOME: looking must not create it
        ):
            return Verdict(PASS, f"artifact folder {path}: not created yet (created on first use)")
        detail = _probe_folder(path, "artifact folder", env)
    else:
        detail = _probe_mlflow_repository(settings, root)
    return Verdict(PASS, detail)


def check_s3_bucket(settings: Settings) -> Verdict:
    """Write and delete a probe under the configured bucket and an s3:// data lake."""
    from eta_cli import storage

    targets = []
    if settings.s3_bucket:
        targets.append(("S3 bucket", storage.S3Uri(settings.s3_bucket, settings.s3_prefix)))
    data = settings.effective_data_uri
    if storage.is_s3(data):
        parsed = storage.parse_s3(data)
        if parsed.bucket != settings.s3_bucket:
            targets.append(("data lake", parsed))
    if not targets:
        return Verdict(
            NOT_APPLICABLE,
            f"no S3 bucket configured ({env_name('s3_bucket')} is empty) and the data lake "
            f"is local ({data})",
        )
    return Verdict(PASS, "; ".join(_probe_s3(settings, uri, what) for what, uri in targets))
