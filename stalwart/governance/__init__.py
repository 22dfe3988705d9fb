"""stalwart.governance — prove what happened, why, and who authorised it; stop everything in seconds.

- :class:`AuditLog` / :func:`verify_chain`: an append-only, hash-chained audit log with signed
  Ed25519 checkpoints anchored outside the database (:func:`open_anchor`: a directory or an S3
  bucket, keyed by the log's identity), RFC 6962 inclusion and consistency proofs.
  Step entries join the step's own transaction (:meth:`AuditLog.prepare`, :func:`chain_insert_sql`).
- :class:`PolicyEngine`: Cedar policies versioned in the store, adopted by every process in seconds,
  changed by two people.
- :class:`PromptChanges`: prompt templates changed at run time, stored, changed by two people.
- :class:`RiskScorer`: an explainable 0-100 score; above 70 review, above 90 block.
- :class:`ReviewQueue`: human decisions with SLAs, escalation, webhooks, no self-approval.
- :class:`KillSwitch`: engage in one call, release with two operators.
- :class:`Compliance`: GDPR export and erasure, audit evidence, the AI inventory.
- :class:`ProvenanceIndex`: which tool arguments derive from untrusted content (taint tracking).
- :class:`KeyStore`: API keys (hashed, shown once), administered per org; :data:`PLATFORM_ORG`'s
  admins administer every org.
"""

from stalwart.governance._anchor import BlobAnchor, CheckpointAnchor, DirectoryAnchor, open_anchor
from stalwart.governance._audit import AuditLog, PreparedAudit
from stalwart.governance._chain import GENESIS, chain_hash
from stalwart.governance._checkpoint import Checkpoint
from stalwart.governance._compliance import Compliance
from stalwart.governance._db import chain_insert_sql
from stalwart.governance._db_sqlite import register_functions as register_sqlite_functions
from stalwart.governance._events import AuditEvent
from stalwart.governance._keys import KEYS_NS, PLATFORM_ORG, ROLES, ApiKey, KeyStore, check_org, key_id_of
from stalwart.governance._killswitch import KillSwitch
from stalwart.governance._merkle import verify_consistency, verify_inclusion
from stalwart.governance._policy import DEFAULT_POLICIES, Decision, PolicyBundle, PolicyEngine
from stalwart.governance._prompts import PromptChanges
from stalwart.governance._proofs import ConsistencyProof, InclusionProof
from stalwart.governance._review import Review, ReviewQueue
from stalwart.governance._risk import RiskAssessment, RiskScorer
from stalwart.governance._taint import ProvenanceIndex, TaintSource, prompt_digests
from stalwart.governance._verify import VerifyReport, verify_chain
from stalwart.governance._webhook import Webhook

__all__ = [
    "DEFAULT_POLICIES",
    "GENESIS",
    "KEYS_NS",
    "PLATFORM_ORG",
    "ROLES",
    "ApiKey",
    "AuditEvent",
    "AuditLog",
    "BlobAnchor",
    "Checkpoint",
    "CheckpointAnchor",
    "Compliance",
    "ConsistencyProof",
    "Decision",
    "DirectoryAnchor",
    "InclusionProof",
    "KeyStore",
    "KillSwitch",
    "PolicyBundle",
    "PolicyEngine",
    "PreparedAudit",
    "PromptChanges",
    "ProvenanceIndex",
    "Review",
    "ReviewQueue",
    "RiskAssessment",
    "RiskScorer",
    "TaintSource",
    "VerifyReport",
    "Webhook",
    "chain_hash",
    "chain_insert_sql",
    "open_anchor",
    "prompt_digests",
    "check_org",
    "key_id_of",
    "register_sqlite_functions",
    "verify_chain",
    "verify_consistency",
    "verify_inclusion",
]
