"""Prompt templates changed at run time: stored, two operators, adopted by every process in seconds;
the files stay the defaults for every template the store holds no version of."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

import stalwart as sw
from stalwart.errors import ConfigError, InvalidInput, PolicyDenied

GREET = 'system = "You greet people."\nuser = "Say hello to {{ name }}."\n[slots.name]\ntype = "str"\npart = "user"\n'


def _app(db: str, prompts: Path) -> sw.App:
    s = sw.load_settings(db=db).model_copy(update={"prompts_dir": str(prompts)})
    s = s.model_copy(update={"governance": s.governance.model_copy(update={"refresh_s": 1.0})})
    app = sw.App("greeter", settings=s)

    @app.workflow(name="greet", version="1")
    async def greet(ctx: sw.Context, name: str) -> str:
        return str(await ctx.llm("default", template="greet@1", vars={"name": name}))

    return app


async def _template_hash(app: sw.App, name: str) -> str:
    rid = await app.start("greet", name)
    await app.result(rid, timeout=30)
    [llm] = [e for e in await app.journal(rid) if e.kind == "llm"]
    return str((llm.meta or {})["template_hash"])


async def test_an_approved_template_is_rendered_by_another_process_within_5s(db_url: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greet@1.toml").write_text(GREET)
    file_hash = "sha256:" + hashlib.sha256(GREET.encode()).hexdigest()
    host1, host2 = _app(db_url, prompts), _app(db_url, prompts)
    changes = (await host1.governance()).prompts
    async with host2.worker(concurrency=2):
        assert await _template_hash(host2, "ann") == file_hash  # nothing stored: the file is the default
        with pytest.raises(ConfigError, match="declares no slots.language"):
            await changes.propose("greet@1", GREET.replace("{{ name }}.", "{{ name }} in {{ language }}."),
                                  proposer="alice")
        new = GREET.replace("Say hello", "Say a warm hello")
        change = await changes.propose("greet@1", new, proposer="alice")
        with pytest.raises(PolicyDenied, match="second person"):
            await changes.approve(change, approver="alice")
        with pytest.raises(InvalidInput, match="no prompt change"):
            await changes.approve("nope", approver="bob")
        new_hash = await changes.approve(change, approver="bob")
        assert new_hash == "sha256:" + hashlib.sha256(new.encode()).hexdigest()
        deadline = time.monotonic() + 5.0
        seen = file_hash
        while time.monotonic() < deadline and seen != new_hash:
            seen = await _template_hash(host2, f"bob{time.monotonic()}")
            await asyncio.sleep(0.2)
        assert seen == new_hash, "host 2 still renders the file's template 5 s after the approval"
        assert (prompts / "greet@1.toml").read_text() == GREET  # the file is untouched, the store rules
    versions = await changes.versions()
    assert [(v["ref"], v["approved_by"], v["active"]) for v in versions] == [("greet@1", "bob", True)]
    gov = await host1.governance()
    kinds = [e.event_type for e in await gov.audit.events(user_id="") if e.resource == "prompt:greet@1"]
    assert kinds == ["prompt.change_proposed", "prompt.changed"]
    await host1.close()
    await host2.close()


def test_prompt_cli_from_an_empty_folder_two_operators(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("STALWART_DB", "STALWART_APP", "STALWART_OPERATOR")}
        return subprocess.run([sys.executable, "-m", "stalwart.cli", "--db", f"sqlite:///{tmp_path / 'p.db'}",
                               *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    (tmp_path / "greet@1.toml").write_text(GREET)
    (tmp_path / "broken@1.toml").write_text('system = "Hi {{ who }}"\n')
    bad = cli("prompt", "propose", "broken@1.toml", "--operator", "alice")
    assert bad.returncode == 2 and "declares no slots.who" in bad.stderr and "Traceback" not in bad.stderr
    change = cli("prompt", "propose", "greet@1.toml", "--operator", "alice", "--quiet")
    assert change.returncode == 0, change.stderr
    change_id = change.stdout.strip()
    mine = cli("prompt", "approve", change_id, "--operator", "alice")
    assert mine.returncode == 1 and "second person" in mine.stderr
    assert cli("prompt", "approve", change_id, "--operator", "bob").returncode == 0
    doc = json.loads(cli("prompt", "list", "--json").stdout)
    assert [(v["ref"], v["proposed_by"], v["approved_by"], v["active"]) for v in doc["versions"]] == [
        ("greet@1", "alice", "bob", True)]
    assert doc["pending"] == []
