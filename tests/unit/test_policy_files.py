"""Reading a proposed policy bundle: a whole directory, or one .cedar file over the bundle in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from stalwart.errors import ConfigError
from stalwart.governance import DEFAULT_POLICIES, PolicyBundle


def test_a_directory_is_a_whole_bundle_and_a_file_replaces_its_namesake(tmp_path: Path) -> None:
    base = PolicyBundle.from_dir(DEFAULT_POLICIES)
    whole = PolicyBundle.files_at(DEFAULT_POLICIES)
    assert set(whole) == {"VERSION", "default.cedar", "schema.cedarschema"}
    extra = tmp_path / "extra.cedar"
    extra.write_text('@id("x")\nforbid (principal, action, resource) when { context.amount > 1 };\n')
    added = PolicyBundle.files_at(extra, base.files)
    assert added["extra.cedar"] == extra.read_text() and added["default.cedar"] == base.files["default.cedar"]
    assert PolicyBundle.from_files(added).content_hash != base.content_hash
    same_name = tmp_path / "default.cedar"
    same_name.write_text(base.files["default.cedar"].replace("context.risk > 70", "context.risk > 50"))
    replaced = PolicyBundle.files_at(same_name, base.files)
    assert set(replaced) == set(base.files) and "context.risk > 50" in replaced["default.cedar"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.cedar", None, "does not exist"),
        ("notes.txt", "hello", "is not a .cedar file"),
        ("empty", "", "holds no .cedar file"),
    ],
)
def test_what_cannot_be_a_bundle_is_refused_clearly(tmp_path: Path, name: str, content: str | None,
                                                   message: str) -> None:
    path = tmp_path / name
    if name == "empty":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        PolicyBundle.files_at(path, {})


def test_a_bundle_without_its_schema_or_with_an_unknown_attribute_does_not_validate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs schema.cedarschema"):
        PolicyBundle.from_files({"a.cedar": "permit (principal, action, resource);"})
    files = dict(PolicyBundle.files_at(DEFAULT_POLICIES))
    files["bad.cedar"] = "permit (principal, action, resource) when { context.no_such_field };"
    with pytest.raises(ConfigError, match="do not validate"):
        PolicyBundle.from_files(files)
