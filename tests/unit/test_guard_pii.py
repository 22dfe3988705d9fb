"""PII detection and redaction through the public guard API (Presidio offline)."""

from __future__ import annotations

import socket

import pytest

import stalwart as sw
from stalwart.guard import Guard, PiiRedactor, PlaceholderMap
from stalwart.settings import GuardSettings


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard(GuardSettings(custom_patterns={"ORDER_ID": r"\bORD-\d{6}\b"})).load()


def test_module_level_redact_uses_placeholders() -> None:
    r = sw.guard.redact("mail me at ada@example.com please")
    assert r.text == "mail me at {{EMAIL_1}} please"
    assert [e.type for e in r.entities] == ["EMAIL"]
    assert r.entities[0].value == "ada@example.com"


def test_numbered_in_text_order_and_stable_for_same_value(guard: Guard) -> None:
    text = "b@x.io wrote to a@x.io, then b@x.io again; call 415-555-0132"
    r = guard.redact(text)
    assert r.text == "{{EMAIL_1}} wrote to {{EMAIL_2}}, then {{EMAIL_1}} again; call {{PHONE_1}}"
    assert r.mapping == {"{{EMAIL_1}}": "b@x.io", "{{EMAIL_2}}": "a@x.io", "{{PHONE_1}}": "415-555-0132"}


def test_placeholder_map_carries_numbering_across_calls_of_a_run(guard: Guard) -> None:
    run = PlaceholderMap()
    first = guard.redact("from a@x.io", run)
    second = guard.redact("cc c@x.io and a@x.io", run)
    assert first.text == "from {{EMAIL_1}}"
    assert second.text == "cc {{EMAIL_2}} and {{EMAIL_1}}"
    again = PlaceholderMap.from_mapping(run.mapping())
    assert guard.redact("d@x.io", again).text == "{{EMAIL_3}}"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("card 4111 1111 1111 1111 on file", "CREDIT_CARD"),
        ("IBAN DE89370400440532013000", "IBAN"),
        ("ssn 536-22-8861", "SSN"),
        ("from 203.0.113.9", "IP_ADDRESS"),
        ("key AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY"),
        ("token ghp_" + "a1" * 18, "GITHUB_TOKEN"),
        ("slack xoxb-123456789012-abcdefghijkl", "SLACK_TOKEN"),
        ("OPENAI_API_KEY=sk-proj-" + "Ab3" * 10, "API_KEY"),
        ("Authorization: Bearer abcdefghijklmnop12345", "BEARER_TOKEN"),
        ("password: hunter2hunter2", "SECRET"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "PRIVATE_KEY"),
        ("your order ORD-123456 shipped", "ORDER_ID"),
    ],
)
def test_recognizers(guard: Guard, text: str, label: str) -> None:
    r = guard.redact(text)
    assert label in [e.type for e in r.entities], r
    assert all(e.value not in r.text for e in r.entities)


def test_recognizers_follow_the_locale() -> None:
    us_phone = "Call me on 212-555-0199 tomorrow"
    us = PiiRedactor(locale="en_US").redact(us_phone)
    assert [e.type for e in us.entities] == ["PHONE"]  # UK_NHS must not fire on a US number
    gb = PiiRedactor(locale="en_GB").redact("NHS number 943 476 5919")
    assert [e.type for e in gb.entities] == ["UK_NHS"]
    assert PiiRedactor(locale="en_US").redact("NHS number 943 476 5919").text != "NHS number {{UK_NHS_1}}"


def test_switched_off_redacts_nothing() -> None:
    off = Guard(GuardSettings(pii=False))
    r = off.redact("mail ada@example.com")
    assert r.text == "mail ada@example.com" and r.entities == []


def test_keep_leaves_entitled_values(guard: Guard) -> None:
    out = guard.scan_output("Sent to ada@example.com and bob@example.com", keep=["ada@example.com"])
    assert out.text == "Sent to ada@example.com and {{EMAIL_1}}"


def test_values_never_appear_in_reprs(guard: Guard) -> None:
    r = guard.redact("ada@example.com")
    assert "ada@example.com" not in repr(r)
    assert "ada@example.com" not in repr(r.entities)


def test_redaction_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the guard tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    r = PiiRedactor(locale="en_US,en_GB").redact("ada@example.co.uk, 020 7946 0958")
    assert r.text == "{{EMAIL_1}}, {{PHONE_1}}"


def test_bad_custom_pattern_names_the_setting() -> None:
    with pytest.raises(sw.ConfigError, match="custom_patterns"):
        Guard(GuardSettings(custom_patterns={"X": "("}))
