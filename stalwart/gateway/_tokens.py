"""Offline token counting with tiktoken's ``cl100k_base`` and ``o200k_base`` encodings.

tiktoken downloads its encoding files on first use, which fails without a network. Stalwart ships
both files in ``_tiktoken/`` (byte-identical to the published ones; the SHA-256 is checked on
load) and builds the encodings from them, so nothing is fetched and nothing is written to a cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

import tiktoken

from stalwart.errors import ConfigError

__all__ = ["TIKTOKEN_DIR", "count_messages", "count_text", "encoding_for"]

TIKTOKEN_DIR = Path(__file__).parent / "_tiktoken"
"""Directory of the bundled encoding files."""

_O200K_PAT = "|".join(  # noqa: FLY002
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPEC: dict[str, tuple[str, str, dict[str, int]]] = {
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}
_lock = threading.Lock()


@cache
def _load(name: str) -> tiktoken.Encoding:
    sha, pat, special = _SPEC[name]
    path = TIKTOKEN_DIR / f"{name}.tiktoken"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"bundled tokenizer file {path} is missing: reinstall stalwart") from exc
    if hashlib.sha256(data).hexdigest() != sha:
        raise ConfigError(f"bundled tokenizer file {path} is corrupt (SHA-256 mismatch): reinstall stalwart")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (ln.split() for ln in data.splitlines() if ln)}
    return tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


def encoding_for(model_id: str) -> tiktoken.Encoding:
    """The encoding to count ``model_id``'s tokens with: o200k for the GPT-4o/4.1/o-series, else cl100k.

    For non-OpenAI models this is an approximation; the provider's reported usage is authoritative.
    """
    m = model_id.lower()
    name = (
        "o200k_base"
        if m.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"))
        else "cl100k_base"
    )
    with _lock:
        return _load(name)


def count_text(text: str, model_id: str = "") -> int:
    """Tokens in ``text`` (special-token markers are counted as ordinary text)."""
    return len(encoding_for(model_id).encode(text, disallowed_special=()))


def count_messages(
    messages: list[dict[str, Any]], model_id: str = "", tools: list[dict[str, Any]] | None = None
) -> int:
    """Prompt tokens of a chat request, with OpenAI's per-message framing overhead (3 + 3 tokens)."""
    enc = encoding_for(model_id)
    total = 3
    for msg in messages:
        total += 3
        for value in msg.values():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            total += len(enc.encode(text, disallowed_special=()))
    if tools:
        total += len(enc.encode(json.dumps(tools, sort_keys=True), disallowed_special=()))
    return total
