"""Pure governance parts: Merkle proofs, canonical events, risk scoring, Cedar decisions."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from stalwart.errors import ConfigError, PolicyDenied
from stalwart.governance import AuditEvent, PolicyBundle, PolicyEngine, RiskScorer, chain_hash
from stalwart.governance._merkle import (
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)

POLICIES = Path(__file__).resolve().parents[2] / "stalwart" / "examples" / "policies"
NOON = 1_795_521_600.0  # 2026-11-25 12:00 UTC
AGENT = {"workflow": "refund", "version": "1", "org": "acme", "role": "support"}
REFUND = {"tool": "issue_refund", "sensitivity": "high", "org": "", "mutating": True}


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def test_merkle_matches_rfc6962_shape() -> None:
    d = leaves(3)
    from stalwart.governance._merkle import node_hash

    assert merkle_root(d) == node_hash(node_hash(d[0], d[1]), d[2])
    f = Frontier()
    f.extend(d)
    assert f.root() == merkle_root(d) and Frontier.from_bytes(3, f.to_bytes()).root() == f.root()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 31, 33])
def test_every_inclusion_and_consistency_proof_verifies(n: int) -> None:
    d = leaves(n)
    root = merkle_root(d)
    for i in range(n):
        proof = inclusion_proof(d, i)
        assert verify_inclusion(d[i], i, n, proof, root)
        assert not verify_inclusion(d[i], (i + 1) % n, n, proof, root) or n == 1
        assert not verify_inclusion(leaf_hash(b"x"), i, n, proof, root)
    for m in range(1, n):
        proof = consistency_proof(d, m)
        assert verify_consistency(m, n, merkle_root(d[:m]), root, proof)
        assert not verify_consistency(m, n, merkle_root(d[:m]), merkle_root(leaves(n + 1)), proof)


def test_chain_hash_and_canonical_body() -> None:
    ev = AuditEvent(
        "tool.called",
        actor="agent:refund@1",
        details={"api_key": "sk-live-123", "b": 1, "a": [2]},
        event_id="e1",
        timestamp=1.5,
    )
    body = ev.body()
    assert "sk-live-123" not in body and '"a":[2],"api_key":"sha256:' in body
    assert body == AuditEvent.from_body(body).body() or "sha256" in body
    assert chain_hash(bytes(32), 0, body) == hashlib.sha256(bytes(32) + bytes(8) + body.encode()).digest()
    assert body.isascii()


def test_risk_is_explainable_and_thresholded() -> None:
    scorer = RiskScorer()
    low = scorer.score(tool_risk="low", data_sensitivity="internal")
    assert low.action == "auto" and low.score < 70
    assert {n for n, _, _ in low.factors} == {
        "tool_risk",
        "data_sensitivity",
        "amount",
        "cost",
        "external_calls",
        "guard_flags",
        "pii",
    }
    assert abs(sum(c for _, _, c in low.factors) - low.score) < 0.05
    review = scorer.score(tool_risk="high", data_sensitivity="restricted", amount=50_000)
    assert 70 < review.score <= 90 and review.action == "review" and review.needs_review
    blocked = scorer.score(
        tool_risk="high", data_sensitivity="restricted", amount=500_000, guard_flags=["injection"]
    )
    assert blocked.score > 90 and blocked.action == "block" and blocked.needs_two_people
    assert "guard_flags 35.0/35" in blocked.explain()
    custom = RiskScorer(review_above=10, block_above=20).score(tool_risk=0.3)
    assert custom.action == "review"
    with pytest.raises(ValueError):
        scorer.score(tool_risk="catastrophic")


def test_cedar_decisions_with_the_bundled_policies() -> None:
    policy = PolicyEngine(POLICIES, clock=lambda: NOON)
    assert policy.version.startswith("refund-") and len(policy.version.split("+")[1]) == 12
    ok = policy.authorize(AGENT, "call_tool", {"tool": "lookup_order", "sensitivity": "low"}, {})
    assert (
        ok.allowed and ok.reasons == ("agents-call-their-orgs-tools",) and ok.policy_version == policy.version
    )
    small = policy.authorize(AGENT, "call_tool", REFUND, {"amount": 4_999})
    assert small.allowed
    big = policy.authorize(AGENT, "call_tool", REFUND, {"amount": 12_500})
    assert not big.allowed and big.review_required and big.reasons == ("refunds-over-100-usd-need-review",)
    assert policy.authorize(AGENT, "call_tool", REFUND, {"amount": 12_500, "reviewed": True}).allowed
    cross = policy.authorize(AGENT, "call_tool", REFUND, {"amount": 100, "target_org": "globex"})
    assert not cross.allowed and not cross.review_required and "no-cross-org-calls" in cross.reasons
    intern = policy.authorize(
        {**AGENT, "role": "intern"}, "call_tool", REFUND, {"amount": 100, "reviewed": True}
    )
    assert not intern.allowed and intern.reasons == ("payments-need-a-support-agent",)
    risky = policy.authorize(AGENT, "call_tool", {"tool": "send_email"}, {"risk": 85})
    assert not risky.allowed and risky.review_required
    night = policy.authorize(AGENT, "call_tool", REFUND, {"amount": 100, "time": NOON + 15 * 3600})
    assert not night.allowed and night.reasons == ("high-sensitivity-writes-only-in-business-hours",)
    with pytest.raises(PolicyDenied, match="refunds-over-100-usd-need-review"):
        big.raise_for_denial()
    dpo = {"kind": "Operator", "id": "ana", "org": "acme", "role": "dpo"}
    assert policy.authorize(
        dpo, "erase_subject", {"kind": "Subject", "id": "c-17", "org": "acme"}, {}
    ).allowed
    assert not policy.authorize(
        dpo, "erase_subject", {"kind": "Subject", "id": "c-42", "org": "globex"}, {}
    ).allowed


def test_bad_policies_never_replace_good_ones(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "p")
    policy = PolicyEngine(tmp_path / "p")
    before = policy.version
    (tmp_path / "p" / "refund.cedar").write_text(
        "permit (principal, action, resource) when { context.nope };"
    )
    with pytest.raises(ConfigError, match="validate"):
        policy.reload()
    assert policy.version == before
    assert policy.authorize(AGENT, "call_tool", {"tool": "lookup_order"}, {}).allowed
    files = dict(policy.bundle.files)
    assert PolicyBundle.hash_files(files) == policy.bundle.content_hash
