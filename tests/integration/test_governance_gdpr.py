"""GDPR reach, on SQLite and PostgreSQL: export and erasure through the app's one governance cover run
inputs and outputs, journal payloads, memory (semantic items and episodes of the subject's runs), the
artifact store (a 200 KiB tool result), vault entries and persisted traces; afterwards nothing of the subject is
readable, another subject is untouched, and the audit chain still verifies."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stalwart as sw
from stalwart.errors import InvalidInput
from stalwart.guard import Vault
from stalwart.memory import LexicalEmbedder, Memory
from stalwart.store import ArtifactMissing, ArtifactRef, open_store
from stalwart.telemetry import load_spans

MASTER = bytes(range(32))
SUBJECT, OTHER = "cust-7", "cust-99"
EMAIL, OTHER_EMAIL = "jane.roe.unique@example.org", "other.person@example.org"


def _app(db_url: str) -> sw.App:
    app = sw.App("gdpr", db=db_url)

    @app.tool(sandbox="none")
    def fetch_history(customer: str, email: str) -> dict:
        """A CRM export: large enough (about 200 KiB) to be kept in the artifact store."""
        return {"customer": customer, "notes": [f"ticket {i}: reached {email} about the order" for i in range(4000)]}

    @app.workflow(name="support", version="1", tools=[fetch_history])
    async def support(ctx: sw.Context, customer: str, email: str) -> dict:
        history = await ctx.tool(fetch_history, customer=customer, email=email)
        await ctx.emit("contacted", {"email": email})  # the run's event stream holds the subject's data too
        return {"customer": customer, "tickets": len(history["notes"]), "contact": email}

    return app


async def _run(app: sw.App, subject: str, email: str) -> str:
    run_id = await app.start("support", {"customer": subject, "email": email}, org="acme", user=subject)
    await app.result(run_id, timeout=60)
    return run_id


@pytest.mark.asyncio
async def test_export_then_erase_reaches_runs_memory_artifacts_and_vault(  # type: ignore[no-untyped-def]
    db_url: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("STALWART_MASTER_KEY", base64.b64encode(MASTER).decode())
    monkeypatch.setenv("STALWART_TELEMETRY__STORE_SPANS", "true")  # traces kept in the store hold user.id
    monkeypatch.chdir(tmp_path)  # the default artifact folder is relative: keep it in this test's folder
    app = _app(db_url)
    try:
        async with app.worker(concurrency=2):
            mine = await _run(app, SUBJECT, EMAIL)
            theirs = await _run(app, OTHER, OTHER_EMAIL)
        store = app.store
        memory = Memory(store, app.guard(), embedder=LexicalEmbedder(), clock=app.clock.time)
        await memory.remember("acme", SUBJECT, "prefers email over phone calls", "preference")
        await memory.record_episode("acme", "", mine, "support run: the customer's blender arrived broken")
        await memory.remember("acme", OTHER, "prefers phone calls over email", "preference")
        vault = await app.vault()
        await vault.put("acme", {"{{EMAIL_1}}": EMAIL}, scope=mine, subject=SUBJECT)
        await vault.put("acme", {"{{PHONE_1}}": "+1 555 0100"}, scope="crm", subject=SUBJECT)
        await vault.put("acme", {"{{EMAIL_1}}": OTHER_EMAIL}, scope=theirs, subject=OTHER)

        assert app.telemetry is not None
        await app.telemetry.flush()  # the runs' spans are in the store now
        gov = await app.governance()
        compliance = await gov.compliance()
        with pytest.raises(InvalidInput):
            await compliance.erase("  ")  # an empty subject would match org-wide memory: refused

        bundle = await compliance.export(SUBJECT, requester="dpo")
        assert [r["id"] for r in bundle["runs"]] == [mine]
        assert bundle["runs"][0]["input"]["email"] == EMAIL
        tool_steps = [s for s in bundle["runs"][0]["steps"] if s["kind"] == "tool"]
        assert tool_steps and "$artifact" in tool_steps[0]["result"]  # the journal keeps only a reference
        assert [(e["kind"], e["data"]) for e in bundle["runs"][0]["events"]] == [("contacted", {"email": EMAIL})]
        (artifact,) = bundle["artifacts"]
        assert artifact["run_id"] == mine and artifact["size"] > 64 * 1024
        assert artifact["content"]["customer"] == SUBJECT and EMAIL in artifact["content"]["notes"][0]
        texts = sorted(m["text"] for m in bundle["memory"])
        assert texts == ["prefers email over phone calls", "support run: the customer's blender arrived broken"]
        assert bundle["vault"][mine] == {"{{EMAIL_1}}": EMAIL}
        assert bundle["vault"]["crm"] == {"{{PHONE_1}}": "+1 555 0100"}
        assert any(sp["attributes"].get("user.id") == SUBJECT for sp in bundle["traces"][mine])
        other_bundle = await compliance.export(OTHER, requester="dpo")
        (other_artifact,) = other_bundle["artifacts"]

        summary = await compliance.erase(SUBJECT, requester="dpo")
        assert summary["runs"] == 1 and summary["not_reached"] == []
        assert summary["memory_items_deleted"] == 2 and summary["artifacts_deleted"] == 1
        assert summary["vault_entries_shredded"] >= 2 and summary["trace_batches_deleted"] >= 1

        # memory: nothing to recall, in the subject's own memory or in the org-wide episodes of their run
        assert (await memory.recall("acme", SUBJECT, "how to contact this customer?")).items == []
        assert (await memory.recall("acme", "", "blender arrived broken")).items == []
        assert await memory.subject_items("acme", SUBJECT, run_ids=[mine]) == []
        assert [i.text for i in (await memory.recall("acme", OTHER, "contact by phone?")).items] == [
            "prefers phone calls over email"
        ]
        # artifacts: the object is gone and its key shredded; the other subject's still opens
        artifacts = await app.artifacts()
        ref = ArtifactRef.from_json(artifact)
        with pytest.raises(ArtifactMissing):
            await artifacts.get(ref)
        assert await artifacts.blobs.get(ref.name) is None
        assert await artifacts.keys.get("acme", ref.key_id) is None
        assert b"ticket 0" in await artifacts.get(ArtifactRef.from_json(other_artifact))
        # vault: no lookup answers, even from a fresh vault with no cached keys
        fresh = Vault(store, master_key=MASTER)
        for v in (vault, fresh):
            assert await v.get("acme", "{{EMAIL_1}}", scope=mine) is None
            assert await v.get("acme", "{{PHONE_1}}", scope="crm") is None
        assert await fresh.get("acme", "{{EMAIL_1}}", scope=theirs) == OTHER_EMAIL
        # runs and journal payloads: scrubbed; the other subject's run untouched
        run = await store.get_run(mine)
        assert EMAIL not in (run.input_json or "") and EMAIL not in str(run.output_json or "")
        assert EMAIL not in str([e.result_json for e in await store.journal(mine)])
        assert OTHER_EMAIL in (await store.get_run(theirs)).input_json
        assert EMAIL not in str([e.data for e in await store.read_events(mine)])
        assert [e.data for e in await store.read_events(theirs)] == [{"email": OTHER_EMAIL}]
        # traces: the subject's run has none left; the other's are still there
        assert await load_spans(store, mine) == [] and await load_spans(store, theirs) != []
        # a second export finds nothing left to give
        after = await compliance.export(SUBJECT, requester="dpo")
        assert after["memory"] == [] and after["artifacts"] == [] and after["vault"] == {} and after["traces"] == {}
        assert EMAIL not in str(after)
        # the audit chain is untouched and still verifies, erasure included
        await gov.audit.checkpoint()
        report = await gov.audit.verify()
        assert report.ok, report.reason
        kinds = [e.event_type for e in await gov.audit.events(user_id="") if e.event_type.startswith("compliance.")]
        assert kinds == ["compliance.exported", "compliance.exported", "compliance.erased", "compliance.exported"]
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_api_export_is_scoped_to_the_callers_org(db_url: str, tmp_path: Path, monkeypatch) -> Any:  # type: ignore[no-untyped-def]
    """Memory held in another org is not exported to this org, and blocks an org admin's erasure."""
    from stalwart.api._governance import Governance as ApiGovernance
    from stalwart.api._governance import ReviewError

    monkeypatch.setenv("STALWART_MASTER_KEY", base64.b64encode(MASTER).decode())
    monkeypatch.chdir(tmp_path)
    app = sw.App("gdpr-api", db=db_url)
    try:
        store = await app.connect()
        memory = Memory(store, app.guard(), embedder=LexicalEmbedder(), clock=app.clock.time)
        await memory.remember("acme", SUBJECT, "likes the blue model", "preference")
        await memory.remember("globex", SUBJECT, "asked about bulk pricing", "fact")
        api = ApiGovernance(app)
        out = await api.export_subject(SUBJECT, "acme", "auditor")
        assert [m["text"] for m in out["memory"]] == ["likes the blue model"] and out["org"] == "acme"
        with pytest.raises(ReviewError) as err:
            await api.erase_subject(SUBJECT, "acme", "admin")
        assert err.value.code == "subject_spans_orgs"
        assert len(await memory.subject_items("globex", SUBJECT)) == 1  # nothing was erased
    finally:
        await app.close()


def test_cli_export_and_erase_reach_memory(tmp_path: Path) -> None:
    """``stalwart compliance export|erase`` use the app's one compliance service: memory included."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"

    async def remember() -> None:
        store = await open_store(db, migrate=True)
        try:
            memory = Memory(store, sw.App("seed", db=db).guard(), embedder=LexicalEmbedder())
            await memory.remember("acme", SUBJECT, "prefers email over phone calls", "preference")
        finally:
            await store.close()

    asyncio.run(remember())
    env = {**os.environ, "STALWART_MASTER_KEY": base64.b64encode(MASTER).decode()}
    env.pop("STALWART_DB", None)

    def cli(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "stalwart.cli", "--db", db, *args], check=False, cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)

    assert [m["text"] for m in cli("compliance", "export", SUBJECT, "--as", "dpo")["memory"]] == [
        "prefers email over phone calls"
    ]
    assert cli("compliance", "erase", SUBJECT, "--as", "dpo")["memory_items_deleted"] == 1
    assert cli("compliance", "export", SUBJECT, "--as", "dpo")["memory"] == []
    assert cli("audit", "verify", "--json")["ok"] is True  # erasure leaves the audit chain intact


@pytest.mark.asyncio
async def test_erasure_fails_closed_without_the_master_key(db_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Vault entries held but no master key to shred them: erasure refuses and changes nothing."""
    from stalwart.errors import ConfigError

    monkeypatch.delenv("STALWART_MASTER_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    app = sw.App("gdpr-nokey", db=db_url)
    try:
        store = await app.connect()
        await Vault(store, master_key=MASTER).put("acme", {"{{EMAIL_1}}": EMAIL}, scope="crm", subject=SUBJECT)
        memory = Memory(store, app.guard(), embedder=LexicalEmbedder(), clock=app.clock.time)
        await memory.remember("acme", SUBJECT, "prefers email over phone calls", "preference")
        compliance = await (await app.governance()).compliance()
        assert list((await compliance.export(SUBJECT))["not_reached"]) == ["vault entries"]
        with pytest.raises(ConfigError, match="erasure refused, nothing was changed.*vault entries.*master key"):
            await compliance.erase(SUBJECT, requester="dpo")
        assert len(await memory.subject_items("acme", SUBJECT)) == 1  # untouched: no half-done erasure
    finally:
        await app.close()
