"""Org names: what ``--org`` and ``"org"`` accept, and the one-line refusal of everything else."""

from __future__ import annotations

import pytest

from stalwart.errors import InvalidInput
from stalwart.governance import PLATFORM_ORG, check_org


@pytest.mark.parametrize("org", ["acme", "globex", "a", "Org-1.eu_west", "x" * 64, PLATFORM_ORG])
def test_valid_org_names_pass_unchanged(org: str) -> None:
    assert check_org(org) == org


@pytest.mark.parametrize("org", ["", " acme", "a b", "../etc", "-acme", ".acme", "x" * 65, "acme\n", "*", "é"])
def test_invalid_org_names_are_refused_with_the_rule(org: str) -> None:
    with pytest.raises(InvalidInput, match="is not a valid org name"):
        check_org(org)
