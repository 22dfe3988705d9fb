"""Storage URLs (``[artifacts] url``, ``[governance] anchor_url``): parsing, settings, errors that
name the setting, the deprecated ``checkpoint_dir``, and checkpoints bound to their log's id."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

import stalwart as sw
from stalwart.errors import ConfigError
from stalwart.governance import open_anchor
from stalwart.governance._checkpoint import checkpoint_valid, sign_checkpoint
from stalwart.store import FileBlobs, parse_blob_url


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("file:.stalwart/artifacts", "file", ".stalwart/artifacts"),
        ("file:/var/lib/stalwart", "file", "/var/lib/stalwart"),
        ("file:///var/lib/stalwart", "file", "/var/lib/stalwart"),
        ("file://localhost/srv/x", "file", "/srv/x"),
        ("s3://my-bucket", "s3", "my-bucket:"),
        ("s3://my-bucket/a/b/", "s3", "my-bucket:a/b"),
    ],
)
def test_good_storage_urls(url: str, kind: str, where: str) -> None:
    parsed = parse_blob_url(url)
    assert parsed.kind == kind
    assert (parsed.path if kind == "file" else f"{parsed.bucket}:{parsed.prefix}") == where


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "is empty"),
        ("ftp://host/x", "unsupported scheme 'ftp'"),
        ("/tmp/artifacts", "unsupported scheme"),
        ("file:", "names no directory"),
        ("file://otherhost/x", "cannot name another host"),
        ("s3://", "not a valid S3 bucket name"),
        ("s3://Upper_Case/x", "not a valid S3 bucket name"),
        ("s3://bucket/a/../b", "'..'"),
    ],
)
def test_bad_storage_urls_name_the_setting(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="artifacts.url") as err:
        parse_blob_url(url, setting="artifacts.url")
    assert fragment in str(err.value)


def test_settings_defaults_env_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("STALWART_ARTIFACTS__URL", "STALWART_GOVERNANCE__ANCHOR_URL", "STALWART_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    s = sw.load_settings()
    assert s.artifacts.url == "file:.stalwart/artifacts" and s.artifacts.s3_endpoint_url is None
    assert s.governance.anchor_url == "file:.stalwart/audit-checkpoints"
    monkeypatch.setenv("STALWART_ARTIFACTS__URL", "s3://fleet/artifacts")
    monkeypatch.setenv("STALWART_ARTIFACTS__S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("STALWART_GOVERNANCE__ANCHOR_URL", "s3://audit/anchors")
    s = sw.load_settings()
    assert s.artifacts.url == "s3://fleet/artifacts" and s.artifacts.s3_endpoint_url == "http://127.0.0.1:9000"
    assert s.governance.anchor_url == "s3://audit/anchors"
    monkeypatch.setenv("STALWART_ARTIFACTS__URL", "gs://elsewhere")
    with pytest.raises(ConfigError, match=r"artifacts\.url.*unsupported scheme 'gs'"):
        sw.load_settings()
    monkeypatch.delenv("STALWART_ARTIFACTS__URL")
    monkeypatch.setenv("STALWART_GOVERNANCE__ANCHOR_URL", "s3://No")
    with pytest.raises(ConfigError, match=r"governance\.anchor_url"):
        sw.load_settings()
    monkeypatch.delenv("STALWART_GOVERNANCE__ANCHOR_URL")
    with pytest.raises(ConfigError, match=r"artifacts\.s3_endpoint_url"):
        sw.load_settings(artifacts={"s3_endpoint_url": "127.0.0.1:9000"})
    (tmp_path / "stalwart.toml").write_text('[artifacts]\nurl = "s3://from-toml/p"\n')
    monkeypatch.delenv("STALWART_ARTIFACTS__S3_ENDPOINT_URL")
    assert sw.load_settings().artifacts.url == "s3://from-toml/p"


def test_checkpoint_dir_still_means_a_file_anchor() -> None:
    s = sw.load_settings(governance={"checkpoint_dir": "/srv/anchors"})
    assert s.governance.anchor_url == "file:/srv/anchors"
    both = sw.load_settings(governance={"checkpoint_dir": "/srv/old", "anchor_url": "s3://new-bucket/a"})
    assert both.governance.anchor_url == "s3://new-bucket/a"  # the new setting wins


def test_a_checkpoint_is_bound_to_its_log_id() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    cp = sign_checkpoint(key, 7, b"h" * 32, b"r" * 32, 1.5, log_id="a" * 32)
    assert checkpoint_valid(cp, key.public_key())
    assert not checkpoint_valid(dataclasses.replace(cp, log_id="b" * 32), key.public_key())
    assert not checkpoint_valid(dataclasses.replace(cp, log_id=""), key.public_key())
    legacy = sign_checkpoint(key, 7, b"h" * 32, b"r" * 32, 1.5)  # signed before logs had ids
    assert legacy.log_id == "" and checkpoint_valid(legacy, key.public_key())
    assert json.loads(json.dumps(cp.to_json()))["log_id"] == "a" * 32


def test_file_anchor_is_write_once_under_the_log_id(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    anchor = open_anchor(f"file:{tmp_path}")
    cp = sign_checkpoint(key, 3, b"h" * 32, b"r" * 32, 1.0, log_id="log1")

    async def go() -> None:
        assert await anchor.put(cp) is True
        assert await anchor.put(dataclasses.replace(cp, signed_at=2.0)) is False
        [(name, back)] = await anchor.list("log1")
        assert name == f"log1/checkpoint-{3:012d}.json" and back.signed_at == 1.0
        assert await anchor.list("log2") == []
        with pytest.raises(ValueError, match="audit log.s id"):
            await anchor.put(dataclasses.replace(cp, log_id=""))
        with pytest.raises(ValueError, match="invalid audit log id"):
            await anchor.list("../etc")

    asyncio.run(go())
    target = tmp_path / "log1" / f"checkpoint-{3:012d}.json"
    assert target.stat().st_mode & 0o777 == 0o444
    assert isinstance(anchor.blobs, FileBlobs)
