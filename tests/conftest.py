"""Shared fixtures: throwaway SQLite files and throwaway PostgreSQL databases on the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_ready() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False


def _start_pg() -> None:
    if shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql"):
        version = sorted(os.listdir("/etc/postgresql"))[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        for _ in range(30):
            if _pg_ready():
                return
            time.sleep(1)


_PG_STATE: dict[str, bool] = {}


def pg_available() -> bool:
    if "ok" not in _PG_STATE:
        ok = _pg_ready()
        if not ok:
            _start_pg()
            ok = _pg_ready()
        if not ok:
            msg = f"!!! PostgreSQL is not reachable at {PG_ADMIN_URL}: PostgreSQL tests are SKIPPED !!!"
            print("\n" + msg, file=sys.stderr)
            warnings.warn(msg, stacklevel=1)
        _PG_STATE["ok"] = ok
    return _PG_STATE["ok"]


def create_pg_database() -> str:
    import psycopg

    name = f"stalwart_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    if not pg_available():
        pytest.skip("PostgreSQL not available (see the loud message above)")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/stalwart.db"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Each test using it runs once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/stalwart.db"
        return
    if not pg_available():
        pytest.skip("PostgreSQL not available (see the loud message above)")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's standalone server, a subprocess on a free port) for the
    session; yields its endpoint URL and sets dummy ``AWS_*`` credentials and region meanwhile.

    What moto does not emulate faithfully: ``GetObjectRetention`` answers 500 (read retention with
    ``HeadObject``); no durability, replication or multi-node consistency. It does keep versions and
    refuse deleting a version under COMPLIANCE retention, and honours ``If-None-Match: *``."""
    import urllib.request

    pytest.importorskip("moto.server", reason="moto[server] (dev extra) is needed for the S3 tests")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            pytest.fail(f"moto's S3 server exited at start (code {proc.returncode})")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto's S3 server did not answer within 30 s")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_SESSION_TOKEN", "AWS_PROFILE"]}
    os.environ.update(env)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(k, None)
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
