"""Gates: a small expression language over a report's metrics, and the regression gate.

::

    semantic_similarity > 0.92 AND cost_per_run_p95 < 0.05 AND latency_p95 < 2s
    injection_detection_rate > 99.5% AND (pii_leakage_rate == 0 OR NOT strict == 1)

Comparisons are ``METRIC OP NUMBER[UNIT]`` with ``OP`` in ``> >= < <= == !=`` and units ``s``,
``ms`` (latencies are in seconds), ``%`` and a leading ``$``; they combine with ``AND``, ``OR``,
``NOT`` and parentheses (keywords in any case). A comparison on a metric that was not computed
fails, with the reason it is missing: a gate never passes by default.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from stalwart.errors import ConfigError

__all__ = ["Check", "GateResult", "Regression", "evaluate_gates", "parse_gates", "regression_gate"]

_TOKEN = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<num>\$?-?\d+(?:\.\d+)?(?:[eE]-?\d+)?(?:ms|s|%)?)(?![\w.])"
    r"|(?P<word>[A-Za-z_][\w.]*))"
)
_OPS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
    "!=": lambda a, b: not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
}


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison as evaluated: the metric's value (``None`` if missing) and why."""

    metric: str
    op: str
    threshold: float
    text: str
    value: float | None = None
    passed: bool = False
    error: str | None = None


@dataclass(slots=True)
class GateResult:
    """A gate expression's outcome with every comparison it made."""

    expression: str
    passed: bool
    checks: list[Check] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
        }


def _number(text: str) -> float:
    t = text.lstrip("$")
    if t.endswith("ms"):
        return float(t[:-2]) / 1000
    if t.endswith("s"):
        return float(t[:-1])
    if t.endswith("%"):
        return float(t[:-1]) / 100
    return float(t)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ConfigError(f"gate {expr!r}: cannot read from position {pos}: {expr[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


Node = tuple[Any, ...]


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _kw(self, word: str) -> bool:
        t = self._peek()
        if t is not None and t[0] == "word" and t[1].upper() == word:
            self.i += 1
            return True
        return False

    def _fail(self, what: str) -> ConfigError:
        t = self._peek()
        return ConfigError(f"gate {self.expr!r}: expected {what}, found {t[1] if t else 'the end'!r}")

    def parse(self) -> Node:
        node = self._or()
        if self._peek() is not None:
            raise self._fail("AND, OR or the end")
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._kw("OR"):
            node = ("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._kw("AND"):
            node = ("and", node, self._not())
        return node

    def _not(self) -> Node:
        if self._kw("NOT"):
            return ("not", self._not())
        return self._atom()

    def _atom(self) -> Node:
        t = self._peek()
        if t is None:
            raise self._fail("a comparison")
        if t[0] == "lp":
            self.i += 1
            node = self._or()
            if self._peek() is None or self._peek()[0] != "rp":  # type: ignore[index]
                raise self._fail("')'")
            self.i += 1
            return node
        if t[0] != "word" or t[1].upper() in ("AND", "OR", "NOT"):
            raise self._fail("a metric name")
        self.i += 1
        op = self._peek()
        if op is None or op[0] != "op":
            raise self._fail(f"a comparison operator after {t[1]!r}")
        self.i += 1
        num = self._peek()
        if num is None or num[0] != "num":
            raise self._fail(f"a number after {t[1]} {op[1]}")
        self.i += 1
        return ("cmp", t[1], op[1], _number(num[1]), f"{t[1]} {op[1]} {num[1]}")


def parse_gates(expression: str) -> Node:
    """Parse a gate expression (raises :class:`ConfigError` naming the problem)."""
    if not expression or not expression.strip():
        raise ConfigError("empty gate expression")
    return _Parser(expression).parse()


def evaluate_gates(
    expression: str, metrics: dict[str, float | None], unavailable: dict[str, str] | None = None
) -> GateResult:
    """Evaluate ``expression`` against ``metrics``. ``unavailable`` maps metric names to the reason
    they could not be computed (a missing model, no cases of that kind); such a comparison fails."""
    tree = parse_gates(expression)
    unavailable = unavailable or {}
    checks: list[Check] = []

    def ev(node: Node) -> bool:
        kind = node[0]
        if kind == "and":
            left, right = ev(node[1]), ev(node[2])  # evaluate both, so every check is reported
            return left and right
        if kind == "or":
            left, right = ev(node[1]), ev(node[2])
            return left or right
        if kind == "not":
            return not ev(node[1])
        _, name, op, threshold, text = node
        value = metrics.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            reason = unavailable.get(name) or (
                f"metric {name!r} was not computed by this suite (known: {', '.join(sorted(metrics)) or 'none'})"
            )
            checks.append(Check(name, op, threshold, text, None, False, reason))
            return False
        ok = bool(_OPS[op](float(value), threshold))
        checks.append(Check(name, op, threshold, text, float(value), ok))
        return ok

    passed = ev(tree)
    return GateResult(expression, passed, checks)


# Which direction is better for a metric, by name.
_LOWER_IS_BETTER = (
    "cost",
    "latency",
    "tokens",
    "leakage",
    "unauthorized",
    "error_rate",
    "failure",
    "hallucinat",
    "exfiltration",
    "false_positive",
    "timeout",
)


def lower_is_better(metric: str) -> bool:
    return any(k in metric for k in _LOWER_IS_BETTER)


@dataclass(frozen=True, slots=True)
class Regression:
    """One metric compared with the baseline. ``change`` is relative, signed so that positive is worse."""

    metric: str
    baseline: float
    current: float
    change: float
    regressed: bool
    allowed: bool


def regression_gate(
    current: dict[str, float | None],
    baseline: dict[str, float | None],
    *,
    threshold: float = 0.10,
    metrics: list[str] | None = None,
    allow: list[str] | tuple[str, ...] = (),
    latency_floor_s: float = 0.05,
) -> tuple[bool, list[Regression]]:
    """Compare ``current`` with ``baseline``: a metric fails when it is worse by more than
    ``threshold`` (relative; for a baseline of 0, any worsening counts) unless it is in ``allow``.

    Returns ``(passed, comparisons)``.
    """
    names = metrics if metrics is not None else sorted(set(current) & set(baseline))
    out: list[Regression] = []
    for name in names:
        b, c = baseline.get(name), current.get(name)
        if b is None or c is None:
            if metrics is not None:
                raise ConfigError(
                    f"regression metric {name!r} is missing from the "
                    f"{'baseline' if b is None else 'current'} report"
                )
            continue
        b, c = float(b), float(c)
        worse = (c - b) if lower_is_better(name) else (b - c)
        change = worse / abs(b) if b else (math.inf if worse > 1e-12 else 0.0)
        regressed = change > threshold
        if regressed and name.startswith("latency") and worse < latency_floor_s:
            regressed = False
        out.append(Regression(name, b, c, change, regressed, name in allow))
    passed = not any(r.regressed and not r.allowed for r in out)
    return passed, out
