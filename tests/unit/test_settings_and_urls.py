"""Settings resolution and database URL validation give clear errors that name the setting."""

from __future__ import annotations

import pytest

from stalwart.errors import ConfigError
from stalwart.settings import load_settings
from stalwart.store import parse_db_url, redact_url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty"),
        ("mysql://x/y", "unsupported database scheme"),
        ("sqlite://relative.db", "three slashes"),
        ("postgresql://u:secret@host:99999/db", "malformed"),
        ("postgresql://u:secret@/db", "names no host"),
        ("postgresql://u:secret@host:5432", "names no database"),
        ("just-a-path.db", "not a database URL"),
    ],
)
def test_malformed_urls_are_refused_clearly(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_db_url(url)
    assert fragment in str(exc.value)
    assert "secret" not in str(exc.value)


def test_good_urls() -> None:
    assert parse_db_url("sqlite:///.stalwart/x.db").path == ".stalwart/x.db"
    assert parse_db_url("sqlite:////var/x.db").path == "/var/x.db"
    pg = parse_db_url("postgres://u:pw@localhost:5432/app")
    assert pg.kind == "postgres" and pg.safe == "postgresql://u:***@localhost:5432/app"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_resolution_order(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STALWART_DB", raising=False)
    assert load_settings().db == "sqlite:///.stalwart/stalwart.db"
    (tmp_path / "stalwart.toml").write_text('db = "sqlite:///from-toml.db"\n[server]\nport = 9000\n')
    assert load_settings().db == "sqlite:///from-toml.db"
    assert load_settings().server.port == 9000
    monkeypatch.setenv("STALWART_DB", "sqlite:///from-env.db")
    assert load_settings().db == "sqlite:///from-env.db"
    assert load_settings(db="sqlite:///from-arg.db").db == "sqlite:///from-arg.db"


def test_bad_settings_name_the_field(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STALWART_DB", raising=False)
    (tmp_path / "stalwart.toml").write_text("[server]\nport = 'eighty'\n")
    with pytest.raises(ConfigError, match="server.port"):
        load_settings()
    (tmp_path / "stalwart.toml").write_text("[serverr]\nport = 1\n")
    with pytest.raises(ConfigError, match="serverr"):
        load_settings()
    (tmp_path / "stalwart.toml").write_text("db = 'mysql://nope/x'\n")
    with pytest.raises(ConfigError, match="unsupported database scheme"):
        load_settings()
