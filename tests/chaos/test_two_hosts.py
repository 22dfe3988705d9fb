"""Two hosts that share nothing but PostgreSQL and an S3 server.

Each `stalwart worker` starts from its own empty folder with `--app … --db …` after the
subcommand, as README and DESIGN write it. A run whose tool returned 200 KiB (kept in the artifact
store, not the database) is killed with SIGKILL on host 1 after that step and finishes on host 2;
`stalwart run explain` and `stalwart audit verify` from a third empty folder succeed; a policy
approved through host 1 is enforced on host 2 within 5 s. No host folder keeps anything.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import stalwart as sw

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.twohost_app:app"
pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
FORBID_WIRES = """\
@id("wires-are-frozen")
forbid (principal is Stalwart::Agent, action == Stalwart::Action::"call_tool", resource == Stalwart::Tool::"wire");
"""


def _env(s3: str, bucket: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STALWART_ARTIFACTS__URL": f"s3://{bucket}/artifacts",
        "STALWART_ARTIFACTS__S3_ENDPOINT_URL": s3,
        "STALWART_GOVERNANCE__ANCHOR_URL": f"s3://{bucket}/anchors",
        "STALWART_WORKER__LEASE_S": "3",
        "STALWART_GOVERNANCE__CHECKPOINT_EVERY": "5",  # signed checkpoints, anchored in S3, during the test
        "STALWART_MASTER_KEY": MASTER_KEY,  # from the secret manager on every host, never from a folder
        **extra,
    }


def _cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=timeout)


def _worker(db: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stalwart.cli", "worker", "--app", APP, "--db", db, "--concurrency", "4"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )


async def _journal(db: str, run_id: str) -> list[sw.JournalEntry]:
    probe = sw.App("probe", db=db)
    try:
        return await probe.journal(run_id)
    finally:
        await probe.close()


def _status(db: str, run_id: str) -> str:
    """The run's status, read in-process: the waits poll with this (a CLI process per poll costs
    seconds on a loaded box); what the test asserts is then read through the CLI from host 3."""

    async def go() -> str:
        probe = sw.App("probe", db=db)
        try:
            return (await probe.get_run(run_id)).status
        finally:
            await probe.close()

    return asyncio.run(go())


def _wait_until(what: str, check, timeout: float, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s; worker log:\n{log.read_text()[-4000:]}")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_run_killed_on_one_host_completes_on_another_sharing_only_postgres_and_s3(
    pg_url: str, s3_server: str, tmp_path: Path
) -> None:
    from stalwart.store import open_blobs

    bucket = f"twohost-{uuid.uuid4().hex[:10]}"
    asyncio.run(open_blobs(f"s3://{bucket}", endpoint_url=s3_server).ensure_bucket())
    host1, host2, host3 = (tmp_path / n for n in ("host1", "host2", "host3"))
    for h in (host1, host2, host3):
        h.mkdir()
    log = tmp_path / "workers.log"
    env3 = _env(s3_server, bucket)

    w1 = _worker(pg_url, host1, _env(s3_server, bucket, TWOHOST_PAUSE_S="600"), log)
    w2: subprocess.Popen[bytes] | None = None
    try:
        started = _cli("run", "start", "report", "--input", "{}", "--key", "twohost-1", "--app", APP,
                       "--db", pg_url, cwd=host1, env=env3)
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()

        def tool_step_done() -> bool:
            journal = asyncio.run(_journal(pg_url, run_id))
            failed = [e.error for e in journal if e.status == "failed"]
            assert not failed, f"the run failed on host 1: {failed}"
            return any(e.kind == "tool" and e.name == "big_report" and e.status == "completed" for e in journal)

        _wait_until("host 1 committing the 200 KiB tool step", tool_step_done, 300, log)
        w1.send_signal(signal.SIGKILL)
        w1.wait()
        journal = asyncio.run(_journal(pg_url, run_id))
        big = next(e for e in journal if e.kind == "tool" and e.name == "big_report")
        assert big.result_json is not None and len(big.result_json) < 4096, "the 200 KiB result is in the database"
        assert "$artifact" in big.result_json

        w2 = _worker(pg_url, host2, _env(s3_server, bucket, TWOHOST_PAUSE_S="0"), log)

        _wait_until("host 2 completing the run", lambda: _status(pg_url, run_id) == "COMPLETED", 300, log)
        got = _cli("run", "get", run_id, "--json", "--db", pg_url, "--app", APP, cwd=host3, env=env3)
        assert got.returncode == 0, got.stderr
        info = json.loads(got.stdout)
        assert info["status"] == "COMPLETED", info
        assert info["output"]["size"] == 200 * 1024  # host 2 read the big result back from S3
        assert info["output"]["finished_on"] == str(w2.pid)

        explain = _cli("run", "explain", run_id, "--db", pg_url, "--app", APP, cwd=host3, env=env3)
        assert explain.returncode == 0, explain.stderr
        assert "big_report" in explain.stdout
        verify = _cli("audit", "verify", "--json", "--db", pg_url, cwd=host3, env=env3)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        report = json.loads(verify.stdout)
        assert report["ok"] and report["checkpoints"] >= 1, report  # checked against the anchors in S3

        # A policy approved through host 1 is enforced by host 2 within 5 s.
        (host1 / "wires.cedar").write_text(FORBID_WIRES)
        proposed = _cli("policy", "propose", "wires.cedar", "--quiet", "--operator", "alice", "--db", pg_url,
                        "--app", APP, cwd=host1, env=env3)
        assert proposed.returncode == 0, proposed.stderr
        change = proposed.stdout.strip()
        approved = _cli("policy", "approve", change, "--operator", "bob", "--db", pg_url, "--app", APP,
                        cwd=host1, env=env3)
        assert approved.returncode == 0, approved.stderr
        approved_at = time.monotonic()
        (host1 / "wires.cedar").unlink()
        outcome = ""
        n = 0
        while time.monotonic() < approved_at + 5:
            n += 1
            pay = _cli("run", "start", "pay", "--input", json.dumps({"account": "ext-9", "cents": 100}),
                       "--key", f"pay-{n}", "--app", APP, "--db", pg_url, cwd=host3, env=env3)
            pay_id = pay.stdout.strip()

            def settled(pid: str = pay_id) -> bool:
                return _status(pg_url, pid) in ("COMPLETED", "FAILED", "DEAD_LETTER")

            _wait_until("host 2 settling a payment run", settled, 120, log)
            got = json.loads(_cli("run", "get", pay_id, "--json", "--db", pg_url, cwd=host3, env=env3).stdout)
            outcome = json.dumps(got.get("error")) + got["status"]
            if got["status"] != "COMPLETED":
                break
        assert "wires-are-frozen" in outcome, f"host 2 did not enforce the new policy within 5 s: {outcome}"
    finally:
        for w in (w1, w2):
            if w is not None and w.poll() is None:
                w.send_signal(signal.SIGKILL)
                w.wait()

    for h in (host1, host2, host3):
        assert _files(h) == [], f"{h.name} kept files a second host would need: {_files(h)}"
