"""Local paths and ``s3://`` URIs behind one small interface.

boto3 and pyarrow both follow the standard AWS credential chain; the endpoint
(``AWS_ENDPOINT_URL_S3``, e.g. MinIO or a local test server) and region come from
:class:`~eta_cli.config.Settings`, so nothing here reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eta_cli.errors import EtaError, first_line

if TYPE_CHECKING:
    from eta_cli.config import Settings


class StorageError(EtaError):
    """An object store or file could not be read or written; the message says which."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, *parts: str) -> S3Uri:
        key = "/".join([self.key.rstrip("/"), *parts]) if self.key else "/".join(parts)
        return S3Uri(self.bucket, key.lstrip("/"))


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def parse_s3(uri: str) -> S3Uri:
    """Split ``s3://bucket/key``; refuse anything else with a clear message."""
    if not is_s3(uri):
        raise StorageError(f"{uri!r} is not an s3:// URI (expected s3://bucket/key)")
    rest = str(uri)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} has no bucket name (expected s3://bucket/key)")
    return S3Uri(bucket, key)


def s3_client(settings: Settings, config: Any = None) -> Any:
    """A boto3 S3 client honouring the configured endpoint, region and profile.

    ``config`` is an optional ``botocore.config.Config`` (e.g. short timeouts for probes).
    """
    import boto3

    session = boto3.session.Session(
        profile_name=settings.aws_profile or None,
        region_name=settings.aws_region or None,
    )
    return session.client("s3", endpoint_url=settings.s3_endpoint_url or None, config=config)


def arrow_s3_filesystem(settings: Settings) -> Any:
    """A pyarrow S3 filesystem for the same endpoint and credentials as :func:`s3_client`."""
    import boto3
    from pyarrow import fs

    session = boto3.session.Session(
        profile_name=settings.aws_profile or None,
        region_name=settings.aws_region or None,
    )
    credentials = session.get_credentials()
    kwargs: dict[str, Any] = {"region": settings.aws_region or session.region_name or "us-east-1"}
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        kwargs.update(
            access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token
        )
    if settings.s3_endpoint_url:
        endpoint = settings.s3_endpoint_url
        kwargs["scheme"] = "https" if endpoint.startswith("https://") else "http"
        kwargs["endpoint_override"] = endpoint.split("://", 1)[-1]
    return fs.S3FileSystem(**kwargs)


def filesystem_and_path(uri: str, settings: Settings) -> tuple[Any, str]:
    """A pyarrow filesystem and the path inside it, for local paths and s3:// URIs."""
    from pyarrow import fs

    if is_s3(uri):
        parsed = parse_s3(uri)
        return arrow_s3_filesystem(settings), f"{parsed.bucket}/{parsed.key}".rstrip("/")
    return fs.LocalFileSystem(), str(uri)


def upload_file(
    local_path: str, uri: str, settings: Settings, content_type: str | None = None
) -> str:
    """Upload one file to ``uri``; return the URI. Errors name the bucket and what failed."""
    from botocore.exceptions import BotoCoreError, ClientError

    target = parse_s3(uri)
    extra = {"ContentType": content_type} if content_type else None
    try:
        s3_client(settings).upload_file(str(local_path), target.bucket, target.key, ExtraArgs=extra)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"could not upload {local_path} to {uri}: {first_line(exc)}") from exc
    return str(target)
