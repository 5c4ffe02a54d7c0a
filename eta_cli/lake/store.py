"""The data lake as a store: its paths, the few atomic operations publishing needs, its lock.

A local folder or an ``s3://`` prefix behind one small interface (:class:`Lake`). A local
lake is locked for a whole ingest (``flock`` locally, a leased lock object taken with S3
conditional writes on S3: :mod:`eta_cli.lake.lock`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from eta_cli import schema, storage
from eta_cli.config import Settings
from eta_cli.errors import IngestError, first_line


class Lake:
    """Paths and the few atomic operations publishing needs, local or on S3."""

    def __init__(self, uri: str, settings: Settings) -> None:
        self.settings = settings
        self.s3 = storage.is_s3(uri)
        if self.s3:
            parsed = storage.parse_s3(uri)
            self.bucket = parsed.bucket
            self.root = f"{parsed.bucket}/{parsed.key}".rstrip("/")
        else:
            self.root = os.path.abspath(os.path.expanduser(uri))
        self._fs: Any = None
        self._client: Any = None
        self._lease: Any = None
        self.orders = self.join("orders")

    @property
    def fs(self) -> Any:
        if self._fs is None:
            from pyarrow import fs

            self._fs = (
                storage.arrow_s3_filesystem(self.settings) if self.s3 else (fs.LocalFileSystem())
            )
        return self._fs

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.s3 else os.path.join(self.root, *parts)

    def uri_of(self, path: str) -> str:
        return f"s3://{path}" if self.s3 else path

    def partition_file(self, order_date: str) -> str:
        return self.join("orders", f"{schema.ORDER_DATE}={order_date}", "part-0.parquet")

    def check_writable(self) -> None:
        """Refuse early (before reading any order) an output that cannot work."""
        if not self.s3:
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise IngestError(f"output {self.root} exists and is not a directory")
            return
        from botocore.exceptions import BotoCoreError, ClientError

        endpoint = self.settings.s3_endpoint_url or "AWS"
        try:
            storage.s3_client(self.settings).head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise IngestError(
                    f"output s3://{self.root}: bucket {self.bucket!r} does not "
                    f"exist (endpoint {endpoint})"
                ) from exc
            raise IngestError(
                f"output s3://{self.root}: cannot access bucket {self.bucket!r}: {code or exc}"
            ) from exc
        except BotoCoreError as exc:
            raise IngestError(
                f"output s3://{self.root}: cannot reach S3 ({endpoint}): {first_line(exc)}"
            ) from exc

    @contextlib.contextmanager
    def locked(self, run_id: str = "") -> Iterator[None]:
        """One writer at a time: ``flock`` on a local lake, a leased lock object on S3
        (:mod:`eta_cli.lake.lock`); a second writer waits, then stops naming the holder."""
        from botocore.exceptions import BotoCoreError, ClientError

        from eta_cli.lake import lock

        if not self.s3:
            with lock.local_lock(self, run_id):
                yield
            return
        lease = lock.S3Lease(self, run_id)
        try:
            lease.acquire()
        except (BotoCoreError, ClientError) as exc:
            raise storage.StorageError(
                f"cannot take the lock of {self.uri_of(self.root)}: {first_line(exc)}"
            ) from exc
        self._lease = lease
        try:
            yield
        finally:
            self._lease = None
            lease.release()

    def confirm_lock(self) -> None:
        """Before a publish: on S3, renew the lease now or stop (see ``S3Lease.confirm``)."""
        if self._lease is not None:
            self._lease.confirm()

    @property
    def lock_taken_over(self) -> dict[str, Any] | None:
        """The holder of a crashed run's S3 lock this run took over, if any."""
        return None if self._lease is None else self._lease.taken_over

    def sync_files(self, paths: Iterable[str]) -> None:
        """Make written files durable before they are published (fsync; local lakes only:
        an S3 PUT is durable once answered). Folders are synced too, for renames."""
        if self.s3:
            return
        for path in paths:
            flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0)
            try:
                fd = os.open(path, flags)
            except FileNotFoundError:
                continue  # already moved (rolling forward)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @property
    def staging_dir(self) -> str:
        """Where a run stages its files on this machine: ``<lake>/_staging`` locally, the
        system's temporary folder for an S3 lake (named in a disk-full error)."""
        return tempfile.gettempdir() if self.s3 else self.join("_staging")

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = storage.s3_client(self.settings)
        return self._client

    def exists(self, path: str) -> bool:
        if not self.s3:
            return os.path.exists(path)
        bucket, key = path.split("/", 1)
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        found = listing.get("Contents", [])
        return bool(found) and (found[0]["Key"] == key or found[0]["Key"].startswith(key + "/"))

    def move(self, src: str, dst: str) -> None:
        if self.s3:  # a server-side copy (one atomic PUT of the target), then delete
            bucket, key = src.split("/", 1)
            dst_bucket, dst_key = dst.split("/", 1)
            self.client.copy({"Bucket": bucket, "Key": key}, dst_bucket, dst_key)
            self.client.delete_object(Bucket=bucket, Key=key)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)

    def read_parquet(self, path: str) -> pa.Table | None:
        import pyarrow.parquet as pq

        if not self.exists(path):
            return None
        try:
            return pq.read_table(path, filesystem=self.fs)
        except (OSError, pa.ArrowException) as exc:
            raise storage.StorageError(
                f"cannot read the published partition {self.uri_of(path)}: {first_line(exc)}"
            ) from exc

    def write_parquet(self, table: pa.Table, path: str) -> None:
        import pyarrow.parquet as pq

        if not self.s3:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # order_id is unique per row: a dictionary would only cost time.
        dictionary = [name for name in table.column_names if name != schema.ORDER_ID]
        pq.write_table(
            table, path, filesystem=self.fs, compression="snappy", use_dictionary=dictionary
        )

    def write_bytes(self, path: str, data: bytes) -> None:
        """Whole-or-nothing write: a temp file renamed locally, a single PUT on S3."""
        if self.s3:
            bucket, key = path.split("/", 1)
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)

    def read_bytes(self, path: str) -> bytes:
        if self.s3:
            bucket, key = path.split("/", 1)
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with open(path, "rb") as handle:
            return handle.read()

    def delete_file(self, path: str) -> None:
        if self.s3:
            bucket, key = path.split("/", 1)
            self.client.delete_object(Bucket=bucket, Key=key)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def delete_dir(self, path: str) -> None:
        if not self.s3:
            shutil.rmtree(path, ignore_errors=True)
            return
        bucket, key = path.split("/", 1)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
            objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects})

    def list_names(self, path: str) -> list[str]:
        """Names directly inside a folder (local) or prefix (S3)."""
        if not self.s3:
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        bucket, key = path.split("/", 1)
        prefix = key.rstrip("/") + "/"
        names = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names.update(obj["Key"][len(prefix) :] for obj in page.get("Contents", []))
            names.update(
                p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            )
        return sorted(name for name in names if name)


@contextlib.contextmanager
def storage_errors(lake: Lake) -> Iterator[None]:
    """Failures writing the lake (disk full, S3 refusing) become one-line errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (OSError, pa.ArrowException, BotoCoreError, ClientError) as exc:
        if _no_space(exc):
            raise staging_error(lake.staging_dir, exc) from exc
        raise storage.StorageError(
            f"ingest failed writing to {lake.uri_of(lake.root)}: {first_line(exc)}"
        ) from exc


def _no_space(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)


def staging_error(folder: str, exc: BaseException) -> storage.StorageError:
    """A failed write in a run's staging folder, named (a full disk says so and what to do);
    the run stops before its publish, so nothing was published."""
    if _no_space(exc):
        hint = "free some space there" + (
            " or set TMPDIR to a larger folder" if folder.startswith(tempfile.gettempdir()) else ""
        )
        return storage.StorageError(
            f"ingest stopped: no space left in the staging folder {folder} ({hint}); "
            "nothing was published"
        )
    return storage.StorageError(
        f"ingest stopped: cannot write to the staging folder {folder}: {first_line(exc)}; "
        "nothing was published"
    )
