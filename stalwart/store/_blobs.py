"""Object storage behind a URL: a directory (``file:``) or an S3-compatible bucket (``s3://``).

Both the artifact store and the audit-checkpoint anchors keep their objects here, opened with
:func:`open_blobs` from a setting (``[artifacts] url``, ``[governance] anchor_url``), so that
nothing a second host needs lives in one host's working directory.

URLs: ``file:relative/dir`` (relative to the working directory), ``file:/abs/dir`` or
``file:///abs/dir``; ``s3://bucket`` or ``s3://bucket/prefix``.

The S3 client is boto3, called through :func:`asyncio.to_thread`. Why boto3 rather than a
hand-written Signature V4 client or aiobotocore: boto3 is the AWS SDK itself, kept current with
S3's behaviour (signing, retries with backoff, redirects between regions, conditional writes,
object lock, the whole standard credential chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, web identity for Kubernetes service accounts). Its clients
are thread-safe, and an object put or get is one blocking call that a worker thread absorbs well.
aiobotocore would be natively async but pins an exact botocore release (it conflicts with any
other botocore user in the same environment) and brings aiohttp in besides httpx.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stalwart.errors import ConfigError, StoreError, StoreUnavailable

__all__ = ["BlobUrl", "Blobs", "FileBlobs", "S3Blobs", "open_blobs", "parse_blob_url"]

# S3 bucket naming rules (3-63 chars, lowercase letters, digits, dots and hyphens)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class BlobUrl:
    """A parsed object-storage URL: ``kind`` is ``"file"`` (``path``) or ``"s3"`` (``bucket``, ``prefix``)."""

    kind: str
    path: str = ""
    bucket: str = ""
    prefix: str = ""


def parse_blob_url(url: str, *, setting: str = "url") -> BlobUrl:
    """Parse ``file:…`` or ``s3://bucket[/prefix]``; a :class:`ConfigError` naming ``setting`` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{setting} is empty: use file:DIR or s3://bucket/prefix")
    url = url.strip()
    if url.startswith("file:"):
        path = url[len("file:"):]
        if path.startswith("//"):  # file://host/path: only the local host
            host, _, rest = path[2:].partition("/")
            if host not in ("", "localhost"):
                raise ConfigError(f"{setting} = {url!r}: a file: URL cannot name another host ({host})")
            path = "/" + rest
        if not path.strip() or path.strip() == "/":
            raise ConfigError(f"{setting} = {url!r} names no directory")
        return BlobUrl("file", path=path)
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"{setting} = {url!r}: {bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, "
                "digits, dots or hyphens)"
            )
        prefix = prefix.strip("/")
        if any(p in (".", "..") for p in prefix.split("/") if p) or "//" in prefix:
            raise ConfigError(f"{setting} = {url!r}: the key prefix has an empty, '.' or '..' segment")
        return BlobUrl("s3", bucket=bucket, prefix=prefix)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigError(f"{setting} = {url!r}: unsupported scheme {scheme!r}; use file:DIR or s3://bucket/prefix")


class Blobs(Protocol):
    """Where objects live. Names are ``/``-separated, without empty, ``.`` or ``..`` segments."""

    kind: str

    async def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing any object there."""
        ...

    async def put_new(self, name: str, data: bytes, *, retain_until: float | None = None) -> bool:
        """Write-once: store ``data`` only if ``name`` does not exist yet (False when it did).
        ``retain_until`` (epoch seconds) asks the backend to refuse deletion before then."""
        ...

    async def get(self, name: str) -> bytes | None:
        """The object's bytes, ``None`` when there is none."""
        ...

    async def get_first(self, name: str) -> bytes | None:
        """The first bytes ever written under ``name`` where the backend keeps versions (an S3
        bucket with versioning, which object lock implies), else the same as :meth:`get`: what
        write-once readers use, so that an overwrite cannot shadow the original."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the object; False when there was none."""
        ...

    async def names(self, prefix: str) -> list[str]:
        """Names under ``prefix`` (a folder: ``"a/b"`` lists ``a/b/…``), sorted."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _check_name(name: str) -> list[str]:
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid object name {name!r}")
    return parts


class FileBlobs:
    """Objects as files under ``root`` (written to a temporary name, then renamed into place).

    Write-once objects (:meth:`put_new`) are created with ``O_EXCL`` and mode 0444; mount the
    directory append-only or on WORM storage where that must hold against the host's root."""

    kind = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FileBlobs({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*_check_name(name))

    def _put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _put_new(self, name: str, data: bytes) -> bool:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _names(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    async def put_new(self, name: str, data: bytes, *, retain_until: float | None = None) -> bool:
        return await asyncio.to_thread(self._put_new, name, data)

    async def get(self, name: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._path(name).read_bytes)
        except FileNotFoundError:
            return None

    async def get_first(self, name: str) -> bytes | None:
        return await self.get(name)

    async def delete(self, name: str) -> bool:
        try:
            self._path(name).unlink()
            return True
        except FileNotFoundError:
            return False

    async def names(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._names, prefix.strip("/"))

    async def aclose(self) -> None:
        return None


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or a web identity via "
    "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)"
)


class S3Blobs:
    """Objects in a bucket of an S3-compatible server, through boto3 (see the module docstring).

    Credentials and region come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``…),
    never from Stalwart's settings, and are never logged. ``endpoint_url`` selects a server other
    than AWS (MinIO, Ceph, moto…); unset, boto3 also honours ``AWS_ENDPOINT_URL_S3``.
    ``access_key``/``secret_key`` exist for tests and benchmarks.
    """

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - boto3 is a dependency
            raise ConfigError("the S3 object store needs boto3: pip install boto3") from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        if session.get_credentials() is None:
            raise ConfigError(f"the S3 object store (s3://{bucket}) has no credentials: {_CREDENTIALS_HINT}")
        self._client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=Config(
                # path-style works on every S3-compatible server; virtual hosts need DNS per bucket
                s3={"addressing_style": "path"} if endpoint_url else {},
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=5,
                read_timeout=30,
                # botocore >= 1.36 adds CRC checksums to every request by default, which several
                # S3-compatible servers reject; compute them only where S3 requires one
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self._lock_checked = False
        self._lock_enabled = False
        self._versioned: bool | None = None

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Blobs(s3://{self.bucket}/{self.prefix}{where})"

    def _key(self, name: str) -> str:
        _check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _where(self) -> str:
        return f"s3://{self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _error(self, exc: Exception, what: str) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code == "NoSuchBucket":
                return StoreError(f"S3 {what} failed: bucket {self.bucket} does not exist ({self._where()})")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"):
                return StoreError(f"S3 {what} refused by {self._where()}: {code} (check the AWS_* credentials)")
            cls = StoreUnavailable if status >= 500 or status == 0 else StoreError
            return cls(f"S3 {what} failed at {self._where()}: {code or status} {err.get('Message', '')}".strip())
        return StoreUnavailable(f"the S3 object store {self._where()} is not reachable: {type(exc).__name__}")

    async def _call(self, what: str, fn: Any, /, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, **kw)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, what) from None

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    async def ensure_bucket(self, *, object_lock: bool = False) -> None:
        """Create the bucket if it does not exist (tests, benchmarks; production provisions it)."""
        from botocore.exceptions import ClientError

        kw: dict[str, Any] = {"Bucket": self.bucket}
        if object_lock:
            kw["ObjectLockEnabledForBucket"] = True
        try:
            await asyncio.to_thread(self._client.create_bucket, **kw)
        except ClientError as exc:
            if self._code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._error(exc, f"creating bucket {self.bucket}") from None

    async def put(self, name: str, data: bytes) -> None:
        await self._call(
            "PUT", self._client.put_object, Bucket=self.bucket, Key=self._key(name), Body=data, ContentMD5=_md5(data)
        )

    async def object_lock_enabled(self) -> bool:
        """Whether the bucket has S3 Object Lock on (checked once)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not self._lock_checked:
            try:
                conf = await asyncio.to_thread(self._client.get_object_lock_configuration, Bucket=self.bucket)
                self._lock_enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                if self._code(exc) == "NoSuchBucket":
                    raise self._error(exc, "reading the object lock configuration") from None
                self._lock_enabled = False  # not configured, or the server has no object lock at all
            except BotoCoreError as exc:
                raise self._error(exc, "reading the object lock configuration") from None
            self._lock_checked = True
        return self._lock_enabled

    async def put_new(self, name: str, data: bytes, *, retain_until: float | None = None) -> bool:
        """A conditional put (``If-None-Match: *``): a second writer gets ``False``, never overwrites.
        With object lock on the bucket and ``retain_until``, the object is put in COMPLIANCE mode
        until then (nobody, root included, can delete or overwrite it before)."""
        from botocore.exceptions import BotoCoreError, ClientError

        # Content-MD5: the server checks the body, and object lock refuses a put without one
        kw: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self._key(name), "Body": data, "IfNoneMatch": "*", "ContentMD5": _md5(data)
        }
        if retain_until is not None and await self.object_lock_enabled():
            kw["ObjectLockMode"] = "COMPLIANCE"
            kw["ObjectLockRetainUntilDate"] = _dt.datetime.fromtimestamp(retain_until, _dt.UTC)
        try:
            await asyncio.to_thread(self._client.put_object, **kw)
        except ClientError as exc:
            # 412: it exists; 409 ConditionalRequestConflict: a concurrent writer of the same name won
            if self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise self._error(exc, "conditional PUT") from None
        except BotoCoreError as exc:
            raise self._error(exc, "conditional PUT") from None
        return True

    async def get(self, name: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        def fetch() -> bytes:
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(name))
            return bytes(resp["Body"].read())

        try:
            return await asyncio.to_thread(fetch)
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, "GET") from None
        except BotoCoreError as exc:
            raise self._error(exc, "GET") from None

    async def get_first(self, name: str) -> bytes | None:
        if self._versioned is None:
            from botocore.exceptions import ClientError

            try:
                conf = await asyncio.to_thread(self._client.get_bucket_versioning, Bucket=self.bucket)
                self._versioned = conf.get("Status") in ("Enabled", "Suspended")
            except ClientError as exc:
                if self._code(exc) == "NoSuchBucket":
                    raise self._error(exc, "reading the versioning configuration") from None
                self._versioned = False  # a server without versioning, or no right to read it
        if not self._versioned:
            return await self.get(name)
        key = self._key(name)

        def fetch() -> bytes | None:
            versions: list[dict[str, Any]] = []
            for page in self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key):
                versions.extend(v for v in page.get("Versions", []) if v["Key"] == key)
            if not versions:
                return None
            first = versions[-1]  # S3 lists the versions of a key newest first
            resp = self._client.get_object(Bucket=self.bucket, Key=key, VersionId=first["VersionId"])
            return bytes(resp["Body"].read())

        return await self._call("GET (first version)", fetch)

    async def delete(self, name: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(name)
        try:
            await asyncio.to_thread(self._client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(exc, "HEAD") from None
        except BotoCoreError as exc:
            raise self._error(exc, "HEAD") from None
        await self._call("DELETE", self._client.delete_object, Bucket=self.bucket, Key=key)
        return True

    async def names(self, prefix: str) -> list[str]:
        folder = prefix.strip("/")
        full = "/".join(p for p in (self.prefix, folder) if p)
        full = f"{full}/" if full else ""
        strip = len(f"{self.prefix}/") if self.prefix else 0

        def listing() -> list[str]:
            out: list[str] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                out.extend(str(o["Key"])[strip:] for o in page.get("Contents", []))
            return sorted(out)

        return list(await self._call("LIST", listing))

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)


def open_blobs(url: str, *, endpoint_url: str | None = None, setting: str = "url") -> FileBlobs | S3Blobs:
    """The object store a URL names: :class:`FileBlobs` for ``file:``, :class:`S3Blobs` for ``s3://``.

    ``endpoint_url`` is the S3-compatible server (unset: AWS, or ``AWS_ENDPOINT_URL_S3``);
    ``setting`` names the setting in error messages."""
    parsed = parse_blob_url(url, setting=setting)
    if parsed.kind == "file":
        return FileBlobs(parsed.path)
    return S3Blobs(parsed.bucket, parsed.prefix, endpoint_url=endpoint_url or None)
