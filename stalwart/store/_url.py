"""Database URLs: parsing, validation and safe display."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from stalwart.errors import ConfigError

__all__ = ["DbUrl", "parse_db_url", "redact_url"]


@dataclass(frozen=True, slots=True)
class DbUrl:
    """A parsed database URL. ``kind`` is ``sqlite`` or ``postgres``."""

    kind: str
    raw: str
    path: str | None = None  # sqlite file path (or ":memory:")

    @property
    def safe(self) -> str:
        """The URL with any password replaced by ``***``, fit for messages and logs."""
        return redact_url(self.raw)


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    hostport = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:***@{hostport}", parts.path, parts.query, parts.fragment))


def parse_db_url(url: str) -> DbUrl:
    """Validate ``url`` and say exactly what is wrong with it if anything is.

    Accepted: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``,
    ``postgresql://user:pass@host:port/db`` (also ``postgres://`` and ``postgresql+psycopg://``).
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("db: the database URL is empty (set --db, STALWART_DB or db in stalwart.toml)")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"db: {redact_url(url)!r} is not a database URL; expected sqlite:///path/to/file.db "
            "or postgresql://user@host:5432/dbname"
        )
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(
                f"db: {url!r} is malformed: a SQLite URL has three slashes before a relative path "
                "(sqlite:///data/stalwart.db) and four before an absolute one (sqlite:////var/lib/x.db)"
            )
        path = rest[1:]
        if not path:
            raise ConfigError(f"db: {url!r} names no database file")
        if path != ":memory:" and Path(path).is_dir():
            raise ConfigError(f"db: {url!r} names a directory, not a database file")
        return DbUrl("sqlite", url, path)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        try:
            parts = urlsplit("postgresql://" + rest)
            _ = parts.port  # raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"db: {redact_url(url)!r} is malformed: {exc}") from None
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise ConfigError(f"db: {redact_url(url)!r} names no host")
        if not parts.path.strip("/"):
            raise ConfigError(f"db: {redact_url(url)!r} names no database (add /dbname)")
        return DbUrl("postgres", "postgresql://" + rest)
    raise ConfigError(
        f"db: unsupported database scheme {scheme!r} in {redact_url(url)!r}; use sqlite:/// or postgresql://"
    )
