"""Nothing a second host needs lives in a working directory: artifacts and audit anchors at
``s3://`` URLs on a real S3-compatible server (moto's standalone server, started by the tests)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

import stalwart as sw
from stalwart.errors import StoreError
from stalwart.governance import AuditEvent, AuditLog, open_anchor, verify_chain
from stalwart.store import S3Blobs, open_blobs, open_store


def _bucket() -> str:
    return f"t{os.urandom(6).hex()}"


async def _make_bucket(endpoint: str, bucket: str, *, object_lock: bool = False) -> None:
    blobs = open_blobs(f"s3://{bucket}", endpoint_url=endpoint)
    assert isinstance(blobs, S3Blobs)
    await blobs.ensure_bucket(object_lock=object_lock)
    await blobs.aclose()


async def test_blobs_roundtrip_write_once_and_listing_through_s3(s3_server: str) -> None:
    bucket = _bucket()
    await _make_bucket(s3_server, bucket)
    blobs = open_blobs(f"s3://{bucket}/some/prefix", endpoint_url=s3_server)
    payload = os.urandom(200_000)
    await blobs.put("acme/org/abc", payload)
    assert await blobs.get("acme/org/abc") == payload
    assert await blobs.get("acme/org/missing") is None
    assert await blobs.put_new("log/cp-1.json", b"first") is True
    assert await blobs.put_new("log/cp-1.json", b"second") is False  # If-None-Match: * keeps the first
    assert await blobs.get("log/cp-1.json") == b"first"
    assert await blobs.names("log") == ["log/cp-1.json"]
    assert await blobs.names("") == ["acme/org/abc", "log/cp-1.json"]
    assert await blobs.delete("acme/org/abc") is True and await blobs.delete("acme/org/abc") is False
    await blobs.aclose()
    # the prefix really is a prefix in the bucket
    raw = open_blobs(f"s3://{bucket}", endpoint_url=s3_server)
    assert await raw.names("some/prefix") == ["some/prefix/log/cp-1.json"]
    await raw.aclose()


async def test_a_missing_bucket_and_a_dead_server_give_clear_errors(s3_server: str) -> None:
    missing = open_blobs("s3://no-such-bucket-here/x", endpoint_url=s3_server)
    with pytest.raises(StoreError, match="bucket no-such-bucket-here does not exist"):
        await missing.put("a", b"1")
    dead = open_blobs("s3://bucket/x", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match="not reachable"):
        await dead.get("a")


def _big_app(settings: sw.Settings) -> sw.App:
    app = sw.App("hosts", settings=settings)

    @app.tool(sandbox="none")
    def export(rows: int) -> dict:
        return {"rows": [{"i": i, "text": "payload " * 12} for i in range(rows)]}

    @app.workflow(name="export", version="1", tools=[export])
    async def flow(ctx: sw.Context) -> int:
        data = await ctx.tool(export, rows=2500)  # about 250 KiB: kept in the artifact store
        extra = await ctx.wait_signal("go")
        return len(data["rows"]) + int(extra)

    return app


async def test_a_large_tool_result_written_on_one_host_is_read_on_another(
    s3_server: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STALWART_MASTER_KEY", base64.b64encode(b"m" * 32).decode())
    bucket = _bucket()
    await _make_bucket(s3_server, bucket)
    monkeypatch.setenv("STALWART_ARTIFACTS__URL", f"s3://{bucket}/artifacts")
    monkeypatch.setenv("STALWART_ARTIFACTS__S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("STALWART_GOVERNANCE__ANCHOR_URL", f"s3://{bucket}/anchors")
    host1, host2, host3 = (tmp_path / n for n in ("host1", "host2", "host3"))
    for d in (host1, host2, host3):
        d.mkdir()

    monkeypatch.chdir(host1)
    app1 = _big_app(sw.load_settings(db=pg_url))
    async with app1.worker(concurrency=1):
        rid = await app1.start("export", org="acme", user="u1")
        for _ in range(600):  # until the run waits for its signal, the big result journaled
            if (await app1.get_run(rid)).status not in ("PENDING", "RUNNING"):
                break
            await _sleep()
    entries = [e for e in await app1.journal(rid) if e.kind == "tool"]
    assert len(entries) == 1 and '"$artifact"' in entries[0].result_json
    await app1.close()
    assert not list(host1.rglob("*")), "host 1 kept something in its working directory"

    monkeypatch.chdir(host2)  # another host: a fresh App, another folder, the same PostgreSQL and bucket
    app2 = _big_app(sw.load_settings(db=pg_url))
    await app2.signal(rid, "go", 1)
    async with app2.worker(concurrency=1):
        assert await app2.result(rid, timeout=60) == 2501  # replaying the tool step read the artifact
    await app2.close()
    assert not list(host2.rglob("*")), "host 2 kept something in its working directory"

    monkeypatch.chdir(host3)  # and the audit log verifies from a third, empty folder against the S3 anchors
    app3 = sw.App("hosts", settings=sw.load_settings(db=pg_url))
    gov = await app3.governance()
    await gov.audit.checkpoint()
    report = await verify_chain(app3.store, await gov.audit.public_key(), anchor=gov.audit.anchor)
    assert report.ok, report.reason
    assert report.checkpoints >= 1 and not report.warnings
    anchored = await open_blobs(f"s3://{bucket}", endpoint_url=s3_server).names(f"anchors/{report.log_id}")
    assert anchored and all(n.startswith(f"anchors/{report.log_id}/checkpoint-") for n in anchored)
    await app3.close()


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)


async def _fill(store: object, anchor: object, n: int = 12) -> AuditLog:
    audit = AuditLog(store, anchor=anchor, checkpoint_every=5)  # type: ignore[arg-type]
    for i in range(n):
        await audit.append([AuditEvent("test.event", action="act", actor="user:u", resource=f"r{i}")])
    await audit.checkpoint()
    return audit


async def test_anchors_in_s3_are_keyed_by_the_log_and_locked_where_the_bucket_has_object_lock(
    s3_server: str, db_url: str
) -> None:
    bucket = _bucket()
    await _make_bucket(s3_server, bucket, object_lock=True)
    anchor = open_anchor(f"s3://{bucket}/audit", s3_endpoint_url=s3_server, retention_days=30)
    store = await open_store(db_url, migrate=True)
    audit = await _fill(store, anchor)
    log_id = await audit.log_id()
    assert len(log_id) == 32
    listed = await anchor.list(log_id)
    assert [cp.tree_size for _, cp in listed] == [5, 10, 12]
    assert all(cp.log_id == log_id for _, cp in listed)
    blobs = anchor.blobs
    assert isinstance(blobs, S3Blobs)
    head = blobs._client.head_object(Bucket=bucket, Key=f"audit/{log_id}/checkpoint-{12:012d}.json")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"]
    # write-once: re-anchoring a different checkpoint of the same size keeps the first copy
    forged = dataclasses.replace(listed[-1][1], signed_at=1.0)
    assert await anchor.put(forged) is False
    assert (await anchor.list(log_id))[-1][1].signed_at == listed[-1][1].signed_at
    report = await verify_chain(store, await audit.public_key(), anchor=anchor)
    assert report.ok and report.checkpoints == 3 and report.log_id == log_id
    await anchor.aclose()
    await store.close()


async def test_an_anchor_of_another_log_is_reported_as_such_not_as_tampering(tmp_path: Path) -> None:
    a_store = await open_store(f"sqlite:///{tmp_path}/a.db", migrate=True)
    b_store = await open_store(f"sqlite:///{tmp_path}/b.db", migrate=True)
    anchor = open_anchor(f"file:{tmp_path}/anchors")
    a = await _fill(a_store, anchor, 7)
    b = await _fill(b_store, anchor, 7)  # same sizes as a's: the collision the flat folder had
    a_id, b_id = await a.log_id(), await b.log_id()
    assert a_id != b_id
    assert sorted(p.name for p in (tmp_path / "anchors").iterdir()) == sorted([a_id, b_id])
    for store, audit in ((a_store, a), (b_store, b)):
        report = await verify_chain(store, await audit.public_key(), anchor=anchor)
        assert report.ok and not report.warnings, report.reason

    # a misplaced copy: b's checkpoint 5 dropped into a's folder under another name
    src = tmp_path / "anchors" / b_id / f"checkpoint-{5:012d}.json"
    dst = tmp_path / "anchors" / a_id / f"checkpoint-{3:012d}.json"
    dst.write_bytes(src.read_bytes())
    report = await verify_chain(a_store, await a.public_key(), anchor=anchor)
    assert report.ok, report.reason
    assert len(report.warnings) == 1 and f"belongs to audit log {b_id}" in report.warnings[0]
    assert a_id in report.warnings[0] and "tamper" not in report.warnings[0].lower()

    # a's own anchor rewritten (same log id, another signature): that *is* this log's problem
    own = tmp_path / "anchors" / a_id / f"checkpoint-{5:012d}.json"
    body = json.loads(own.read_text())
    body["signed_at"] += 1
    own.chmod(0o644)
    own.write_text(json.dumps(body))
    bad = await verify_chain(a_store, await a.public_key(), anchor=anchor)
    assert not bad.ok and "differs between the database and the anchor" in bad.reason
    await a_store.close()
    await b_store.close()


async def test_an_anchor_that_cannot_be_written_is_retried_and_never_fails_the_log(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/a.db", migrate=True)
    blocked = tmp_path / "anchors"
    blocked.write_text("a file where the anchor directory should be")  # every anchor write fails
    audit = await _fill(store, open_anchor(f"file:{blocked}"), 7)
    assert audit.anchor_failures >= 1  # the checkpoints were signed and stored all the same
    assert [cp.tree_size for cp in await audit.db.checkpoints()] == [5, 7]
    blocked.unlink()
    await audit.record("test.event", action="act", actor="user:u", resource="r-late")
    await audit.checkpoint()  # anchors the backlog first, then the new checkpoint
    log_id = await audit.log_id()
    assert sorted(p.name for p in (blocked / log_id).iterdir()) == [
        f"checkpoint-{n:012d}.json" for n in (5, 7, 8)
    ]
    await store.close()


async def test_an_overwritten_s3_anchor_is_read_from_its_first_version(s3_server: str, tmp_path: Path) -> None:
    bucket = _bucket()
    await _make_bucket(s3_server, bucket, object_lock=True)  # object lock implies versioning
    anchor = open_anchor(f"s3://{bucket}/a", s3_endpoint_url=s3_server, retention_days=1)
    store = await open_store(f"sqlite:///{tmp_path}/a.db", migrate=True)
    audit = await _fill(store, anchor, 7)
    log_id = await audit.log_id()
    blobs = anchor.blobs
    assert isinstance(blobs, S3Blobs)
    key = f"a/{log_id}/checkpoint-{7:012d}.json"
    # someone with write access (not If-None-Match) puts a rewritten checkpoint over the anchor
    body = json.loads(blobs._client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body["head_hash"] = "00" * 32
    blobs._client.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(),
                             ContentMD5=base64.b64encode(hashlib.md5(json.dumps(body).encode()).digest()).decode())
    assert json.loads(await blobs.get(f"{log_id}/checkpoint-{7:012d}.json") or b"{}")["head_hash"] == "00" * 32
    [_, (_, cp7)] = await anchor.list(log_id)
    assert cp7.head_hash != bytes(32)  # the first version, as anchored
    report = await verify_chain(store, await audit.public_key(), anchor=anchor)
    assert report.ok, report.reason
    await store.close()
