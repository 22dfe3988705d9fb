"""The artifact store on a directory and on an S3-compatible server (moto, started in the test):
encrypted at rest, content-addressed, checked on read, with retention and erasure."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from stalwart.errors import ConfigError, StoreError
from stalwart.store import open_blobs, open_store
from stalwart.store._artifacts import ArtifactMissing, ArtifactStore, FileBlobs, S3Blobs, is_artifact_ref
from stalwart.store._sql import SqlRunner

MASTER = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def time(self) -> float:
        return self.t


@pytest.fixture(params=["filesystem", "s3"])
async def artifacts(request, db_url, tmp_path):  # type: ignore[no-untyped-def]
    store = await open_store(db_url, migrate=True)
    if request.param == "filesystem":
        blobs = FileBlobs(tmp_path / "artifacts")
    else:
        endpoint = request.getfixturevalue("s3_server")
        blobs = open_blobs(f"s3://b{os.urandom(6).hex()}/artifacts", endpoint_url=endpoint)
        assert isinstance(blobs, S3Blobs)
        await blobs.ensure_bucket()
    clock = Clock()
    arts = ArtifactStore(store, blobs, master_key=MASTER, clock=clock.time, default_ttl_s=3600)
    arts.test_clock = clock  # type: ignore[attr-defined]
    yield arts
    if isinstance(blobs, S3Blobs):
        await blobs.aclose()
    await store.close()


async def test_roundtrip_is_encrypted_and_rows_hold_only_hashes(artifacts) -> None:  # type: ignore[no-untyped-def]
    data = b"tool output: " + b"card ending 4242, customer Ada " * 2000
    ref = await artifacts.put("acme", data, run_id="run-1", media_type="text/plain")
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    assert await artifacts.get(ref) == data
    assert await artifacts.get(ref.to_json()) == data
    raw = await artifacts.blobs.get(ref.name)
    assert raw is not None and b"card ending" not in raw and raw.startswith(b"SWA1")
    rows = await SqlRunner(artifacts.store).fetch("SELECT * FROM artifacts")
    assert len(rows) == 1 and b"card ending" not in json.dumps(rows, default=str).encode()
    # identical content is stored once
    assert (await artifacts.put("acme", data)).name == ref.name
    assert await artifacts.usage("acme") == (1, len(data))


async def test_tampered_or_foreign_objects_do_not_open(artifacts) -> None:  # type: ignore[no-untyped-def]
    ref = await artifacts.put("acme", b"x" * 1000)
    other = await artifacts.put("globex", b"y" * 1000)
    # move globex's ciphertext under acme's name: the AEAD binding to the name refuses it
    await artifacts.blobs.put(ref.name, await artifacts.blobs.get(other.name))
    with pytest.raises(ConfigError):
        await artifacts.get(ref)
    # a forged reference to content the org never stored
    forged = {**ref.to_json(), "$artifact": f"acme/org/{'0' * 64}", "sha256": "0" * 64}
    with pytest.raises(ArtifactMissing):
        await artifacts.get(forged)
    with pytest.raises(StoreError):
        await artifacts.get({**ref.to_json(), "$artifact": "acme/org/../../etc"})


async def test_externalize_keeps_small_values_inline(artifacts) -> None:  # type: ignore[no-untyped-def]
    small = {"order_id": "A-1", "total_cents": 4999}
    assert await artifacts.externalize("acme", small, limit=1024) == small
    big = {"rows": [{"i": i, "text": "lorem ipsum " * 5} for i in range(500)]}
    ref = await artifacts.externalize("acme", big, limit=1024, run_id="run-2")
    assert is_artifact_ref(ref) and set(ref) == {"$artifact", "sha256", "size", "media_type"}
    assert await artifacts.internalize(ref) == big
    assert await artifacts.internalize(small) == small


async def test_retention_sweeps_expired_artifacts(artifacts) -> None:  # type: ignore[no-untyped-def]
    old = await artifacts.put("acme", b"old payload", ttl_s=10)
    keep = await artifacts.put("acme", b"kept payload", ttl_s=10_000)
    artifacts.test_clock.t += 11
    with pytest.raises(ArtifactMissing):
        await artifacts.get(old)  # expired reads as missing even before the sweep
    assert await artifacts.sweep() == 1
    assert await artifacts.blobs.get(old.name) is None
    assert await artifacts.get(keep) == b"kept payload"


async def test_erasure_deletes_and_shreds_the_subjects_key(artifacts) -> None:  # type: ignore[no-untyped-def]
    mine = await artifacts.put("acme", b"ticket of cust-9 with address", subject="cust-9")
    theirs = await artifacts.put("acme", b"ticket of cust-10", subject="cust-10")
    backup = await artifacts.blobs.get(mine.name)  # a copy left in a backup
    assert mine.key_id != "org" and "cust-9" not in mine.name
    assert await artifacts.erase_subject("acme", "cust-9") == 1
    with pytest.raises(ArtifactMissing):
        await artifacts.get(mine)
    # even restoring the object from the backup does not bring the payload back
    await artifacts.blobs.put(mine.name, backup)
    await SqlRunner(artifacts.store).execute(
        "INSERT INTO artifacts (org, key_id, sha256, size, media_type, run_id, created_at, expires_at) "
        "VALUES (?,?,?,?,?,?,?,?)", ("acme", mine.key_id, mine.sha256, mine.size, "x", None, 0.0, None))
    with pytest.raises(ArtifactMissing):
        await artifacts.get(mine)
    assert await artifacts.get(theirs) == b"ticket of cust-10"


def test_missing_master_key_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="master key"):
        ArtifactStore(object(), FileBlobs(tmp_path), master_key=None)


def test_s3_without_credentials_names_the_variables(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        open_blobs("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9")
