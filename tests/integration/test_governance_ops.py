"""Reviews, webhooks, the kill switch, two-person policy changes and GDPR erasure on real stores."""

from __future__ import annotations

import json
import random
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from stalwart.errors import InvalidInput, PolicyDenied
from stalwart.governance import (
    AuditLog,
    Compliance,
    KillSwitch,
    PolicyEngine,
    Review,
    ReviewQueue,
    RiskScorer,
    Webhook,
    verify_chain,
)
from stalwart.store import NewRun, open_store

pytestmark = pytest.mark.asyncio
POLICIES = Path(__file__).resolve().parents[2] / "stalwart" / "examples" / "policies"


class Clock:
    def __init__(self, t: float = 1_795_521_600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(db_url):  # type: ignore[no-untyped-def]
    s = await open_store(db_url, migrate=True)
    yield s
    await s.close()


class Hook:
    """A loopback Slack-compatible endpoint that fails the first ``failures`` posts with 500."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                hook.attempts += 1
                if hook.attempts <= hook.failures:
                    self.send_response(500)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _nosleep(_: float) -> None:
    return None


def _queue(store: Any, clock: Clock, **kw: Any) -> tuple[ReviewQueue, list[Review]]:
    decided: list[Review] = []

    async def on_decision(review: Review) -> None:
        decided.append(review)

    def validate(review: Review, args: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(args.get("cents"), int) or args["cents"] <= 0:
            raise ValueError("cents must be a positive integer")
        return args

    audit = AuditLog(store, clock=clock)
    return ReviewQueue(
        store, clock, audit=audit, on_decision=on_decision, validate_args=validate, rng=random.Random(7), **kw
    ), decided


RISKY = RiskScorer().score(tool_risk="high", data_sensitivity="restricted", amount=50_000)
BLOCKED = RiskScorer().score(
    tool_risk="high", data_sensitivity="restricted", amount=500_000, guard_flags=["injection"]
)
ACTION = {"tool": "issue_refund", "args": {"order_id": "A-1002", "cents": 12_500}}


async def test_review_rules(store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    queue, decided = _queue(store, clock)
    r = await queue.create("run-1", 3, "agent:refund@1", ACTION, RISKY, org="acme")
    assert r.status == "pending" and r.severity == "medium" and r.due_at == clock.t + 4 * 3600
    assert await queue.create("run-1", 3, "agent:refund@1", ACTION, RISKY) == r  # idempotent on replay
    assert [x.id for x in await queue.list()] == [r.id]
    with pytest.raises(PolicyDenied, match="own review"):
        await queue.decide(r.id, "agent:refund@1", "approve")
    with pytest.raises(InvalidInput, match="invalid"):
        await queue.decide(r.id, "bob", "modify", {"order_id": "A-1002", "cents": -5})
    done = await queue.decide(
        r.id, "bob", "modify", {"order_id": "A-1002", "cents": 10_000}, note="cap at 100"
    )
    assert (
        done.status == "modified" and done.approved and done.args == {"order_id": "A-1002", "cents": 10_000}
    )
    assert decided == [done] and decided[0].signal_payload()["args"]["cents"] == 10_000
    with pytest.raises(InvalidInput, match="already"):
        await queue.decide(r.id, "carol", "reject")
    events = [e for e in await queue.audit.events(run_ids=["run-1"]) if e.event_type == "review.decided"]
    assert events and events[0].actor == "user:bob" and events[0].risk_score == RISKY.score


async def test_blocked_risk_needs_two_distinct_approvers(store) -> None:  # type: ignore[no-untyped-def]
    queue, decided = _queue(store, Clock())
    r = await queue.create("run-2", 1, "agent:refund@1", ACTION, BLOCKED)
    assert r.severity == "critical" and r.required_approvals == 2
    first = await queue.decide(r.id, "bob", "approve")
    assert first.status == "pending" and first.approvals == ("bob",) and not decided
    with pytest.raises(PolicyDenied, match="two different"):
        await queue.decide(r.id, "bob", "approve")
    second = await queue.decide(r.id, "carol", "approve")
    assert second.status == "approved" and second.approvals == ("bob", "carol") and decided == [second]


async def test_sla_breach_escalates_to_the_next_tier(store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    queue, _ = _queue(store, clock)
    high = await queue.create("run-3", 1, "agent:x", ACTION, RISKY, severity="high")
    crit = await queue.create("run-4", 1, "agent:x", ACTION, BLOCKED)
    clock.t += 15 * 60 + 1
    escalated = await queue.escalate_overdue()
    assert [e.id for e in escalated] == [crit.id] and escalated[0].tier_name == "leads"
    clock.t += 45 * 60
    escalated = {e.id: e for e in await queue.escalate_overdue()}
    assert set(escalated) == {high.id, crit.id}
    assert escalated[high.id].severity == "critical" and escalated[high.id].due_at == clock.t + 15 * 60
    assert escalated[crit.id].tier_name == "on-call"
    manual = await queue.decide(high.id, "lead-1", "escalate")
    assert manual.tier == 2 and manual.status == "pending"


async def test_low_risk_is_auto_approved_and_sampled(store) -> None:  # type: ignore[no-untyped-def]
    queue, decided = _queue(store, Clock(), sample_rate=0.5)
    low = RiskScorer().score(tool_risk="low")
    made = [await queue.create(f"run-{i}", 1, "agent:x", ACTION, low) for i in range(20)]
    assert all(r.status == "auto_approved" and r.approved for r in made) and not decided
    sampled = await queue.list("auto_approved", sampled=True)
    assert 3 <= len(sampled) <= 17
    post = await queue.decide(sampled[0].id, "auditor", "reject")
    assert post.status == "rejected" and not decided  # post hoc: the run has moved on


async def test_webhook_retries_until_delivered() -> None:
    hook = Hook(failures=2)
    try:
        assert await Webhook(hook.url, sleep=_nosleep).send("Review needed", {"run": "r1"})
        assert hook.attempts == 3 and hook.received[0]["text"].startswith("Review needed")
        assert hook.received[0]["blocks"][0]["type"] == "header"
        hook.failures, hook.attempts = 10, 0
        assert not await Webhook(hook.url, attempts=3, sleep=_nosleep).send("x", {})
        assert hook.attempts == 3
    finally:
        hook.close()


async def test_queue_notifies_the_webhook(store) -> None:  # type: ignore[no-untyped-def]
    hook = Hook(failures=1)
    try:
        queue, _ = _queue(store, Clock(), webhook=Webhook(hook.url, sleep=_nosleep))
        await queue.create("run-9", 1, "agent:x", ACTION, RISKY)
        await queue.flush()
        assert hook.attempts == 2 and "Review needed" in hook.received[0]["text"]
    finally:
        hook.close()


async def test_kill_switch_engage_and_two_person_release(store) -> None:  # type: ignore[no-untyped-def]
    from stalwart.sandbox import CredentialBroker

    clock = Clock()
    audit = AuditLog(store, clock=clock)
    broker = CredentialBroker(store, clock=clock)
    await broker.refresh()
    token, _ = await broker.mint("run-1", "acme", "lookup_order", ["read:orders"])
    ks = KillSwitch(store, audit, broker, clock)
    record = await ks.engage("runaway refunds", "alice")
    assert (await store.get_flag("kill_switch"))["reason"] == "runaway refunds"
    assert record["credential_epoch"] == 1
    from stalwart.errors import CredentialError

    with pytest.raises(CredentialError):
        await broker.verify(token, "read:orders", org="acme")
    assert await ks.release("alice") == "pending"
    with pytest.raises(PolicyDenied, match="second"):
        await ks.release("alice")
    assert await store.get_flag("kill_switch") is not None
    assert await ks.release("bob") == "released"
    assert await store.get_flag("kill_switch") is None and await ks.release("bob") == "not_engaged"
    kinds = [e.event_type for e in await audit.events(user_id="")]
    assert kinds == ["kill_switch.engaged", "kill_switch.release_requested", "kill_switch.released"]
    assert (await verify_chain(store)).ok


async def test_policy_change_needs_two_people(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(POLICIES, tmp_path / "p")
    audit = AuditLog(store)
    policy = PolicyEngine(tmp_path / "p", store=store, audit=audit)
    other = PolicyEngine(tmp_path / "p", store=store)
    before = policy.version
    agent = {"workflow": "refund", "version": "1", "org": "acme", "role": "support"}
    refund = {"tool": "issue_refund", "sensitivity": "high", "mutating": True}
    files = dict(policy.bundle.files)
    files["refund.cedar"] = files["refund.cedar"].replace("context.amount > 10000", "context.amount > 1000")
    change = await policy.propose_change(files, label="refund-2026.12", proposer="alice")
    assert policy.authorize(agent, "call_tool", refund, {"amount": 5000, "time": 1_795_521_600}).allowed
    with pytest.raises(PolicyDenied, match="second person"):
        await policy.approve_change(change, approver="alice")
    version = await policy.approve_change(change, approver="bob")
    assert version != before and version.startswith("refund-2026.12+")
    assert not policy.authorize(agent, "call_tool", refund, {"amount": 5000, "time": 1_795_521_600}).allowed
    assert other.version == before and await other.sync() == version
    kinds = [e.event_type for e in await audit.events(user_id="")]
    assert kinds == ["policy.change_proposed", "policy.changed"]


async def test_gdpr_export_and_erase_leave_no_raw_pii(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from stalwart.guard import Vault

    email = "jane.roe.unique@example.org"
    vault = Vault(store, master_key=bytes(range(32)))
    for i in range(2):
        await store.create_run(
            NewRun(
                id=f"run-{i}",
                workflow="refund",
                version="1",
                org="acme",
                user="c-17",
                input_json=json.dumps({"email": email, "order_id": "A-1001"}),
                trace_id="t" * 32,
                created_at=1.0,
            )
        )
        await vault.put("acme", {"{{EMAIL_1}}": email}, scope=f"run-{i}", subject="c-17")
    await store.create_run(
        NewRun(
            id="run-x",
            workflow="refund",
            version="1",
            org="acme",
            user="c-99",
            input_json='{"email": "other@example.org"}',
            trace_id="t" * 32,
            created_at=1.0,
        )
    )
    audit = AuditLog(store)
    comp = Compliance(store, audit, vault)
    bundle = await comp.export("c-17", requester="dpo")
    assert [r["id"] for r in bundle["runs"]] == ["run-0", "run-1"]
    assert bundle["runs"][0]["input"]["email"] == email and bundle["vault"]["run-0"]["{{EMAIL_1}}"] == email
    summary = await comp.erase("c-17", requester="dpo")
    assert summary["runs"] == 2 and summary["vault_entries_shredded"] >= 2
    assert await vault.get("acme", "{{EMAIL_1}}", scope="run-0") is None
    assert "other@example.org" in (await store.get_run("run-x")).input_json
    if store.kind == "sqlite":
        raw = b"".join(p.read_bytes() for p in Path(store.path).parent.glob("stalwart.db*"))
        assert email.encode() not in raw
    else:
        async with store._pool.connection() as conn:
            dump = await (
                await conn.execute("SELECT string_agg(t::text, '') FROM (SELECT * FROM runs) t")
            ).fetchone()
            assert email not in dump[0]
    kinds = [e.event_type for e in await audit.events(user_id="")]
    assert kinds == ["compliance.exported", "compliance.erased"]
    md, data = await comp.report()
    assert "Review SLA adherence" in md and data["access"]["audit_entries_by_type"]["compliance.erased"] == 1


async def test_inventory_lists_workflows_tools_and_risk(store) -> None:  # type: ignore[no-untyped-def]
    from stalwart.examples.refund import app

    inv = Compliance(store, AuditLog(store)).inventory(app, models=[{"name": "local", "provider": "local"}])
    assert inv["workflows"][0]["name"] == "refund" and "issue_refund" in inv["workflows"][0]["tools"]
    assert (
        inv["tools"]["issue_refund"]["scopes"] == ["write:payments"]
        and inv["tools"]["issue_refund"]["mutating"]
    )
    assert inv["workflows"][0]["risk"]["score"] >= inv["tools"]["lookup_order"]["risk"]["score"]
