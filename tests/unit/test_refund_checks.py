"""The refund example's answers are checked against the ticket they were read from, so a small model
that reads "$10" as 10 cents fails validation (and the gateway corrects it or falls back)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from stalwart.examples.refund import Reply, Triage, checked_reply, checked_triage, stated_amounts


def triage(**kw: object) -> str:
    return json.dumps({"order_id": "A-1001", "intent": "refund", "amount_cents": 0, "urgency": "low", **kw})


def test_amounts_are_read_in_cents_in_the_forms_tickets_write_them() -> None:
    assert stated_amounts("refund $10 of A-1001") == {1000}
    assert stated_amounts("A-1002: $12.50, or 20 dollars, or €1,200.5") == {1250, 2000, 120050}
    assert stated_amounts("Refund 45 usd, thanks") == {4500}
    assert stated_amounts("Refund order A-1003 please.") == set()


def test_the_amount_must_be_one_the_ticket_states_and_0_when_it_states_none() -> None:
    ticket = {"email": "{{EMAIL_1}}", "message": "Please refund order A-1001, $10."}
    model = checked_triage(ticket)
    assert model(**json.loads(triage(amount_cents=1000))).amount_cents == 1000
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(triage(amount_cents=10))  # "$10" read as 10 cents
    (err,) = info.value.errors()
    assert err["loc"] == ("amount_cents",) and "10 is not the amount the ticket states in cents" in err["msg"]
    none_stated = checked_triage({"message": "I want my money back for order A-1001."})
    assert none_stated.model_validate_json(triage(amount_cents=0)).amount_cents == 0
    with pytest.raises(ValidationError, match="the ticket states no amount: answer 0"):
        none_stated.model_validate_json(triage(amount_cents=3))


def test_the_order_id_must_be_one_the_ticket_writes() -> None:
    model = checked_triage({"message": "Refund A-1002, $5"})
    with pytest.raises(ValidationError, match="'A-1001' is not an order id the ticket writes"):
        model.model_validate_json(triage(amount_cents=500))
    assert checked_triage({"message": "refund my last order"}).model_validate_json(triage()).order_id == "A-1001"


def test_checked_models_keep_the_schema_and_name_the_model_is_asked_for() -> None:
    ticket = {"message": "Refund A-1001, $10"}
    assert checked_triage(ticket).__name__ == "Triage"
    assert checked_triage(ticket).model_json_schema() == Triage.model_json_schema()
    assert checked_reply(1000).__name__ == "Reply"
    assert checked_reply(1000).model_json_schema() == Reply.model_json_schema()


def test_the_reply_goes_to_the_ticket_address_and_states_the_amount_refunded() -> None:
    model = checked_reply(4999)
    ok = model(email="{{EMAIL_1}}", subject="Your refund", body="We refunded 49.99 USD.")
    assert ok.email == "{{EMAIL_1}}"
    assert model(email="grace@bounce.invalid", subject="s", body="49.99 USD back").email == "grace@bounce.invalid"
    with pytest.raises(ValidationError, match="must state the amount refunded, exactly: 49.99 USD"):
        model(email="{{EMAIL_1}}", subject="s", body="We refunded 0.49 USD.")
    with pytest.raises(ValidationError, match="'\\[EMAIL\\]' is not the customer's email"):
        model(email="[EMAIL]", subject="s", body="We refunded 49.99 USD.")
