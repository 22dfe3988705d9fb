"""The compromised-version check fails on a bad pin (lock file or installed) and passes otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_compromised.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


def test_denylist_starts_with_the_litellm_releases() -> None:
    text = (ROOT / "supply-chain" / "compromised.txt").read_text()
    assert "litellm==1.82.7" in text and "litellm==1.82.8" in text


def test_a_locked_compromised_version_fails(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("httpx==0.28.1 \\\n    --hash=sha256:abc\nLiteLLM[proxy]==1.82.8 \\\n    --hash=sha256:def\n")
    r = _run("--lock", str(lock), "--no-installed")
    assert r.returncode == 1
    assert "LiteLLM==1.82.8" in r.stderr


def test_a_neighbouring_version_passes(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("litellm==1.82.6\nlitellm==1.82.9\n")
    r = _run("--lock", str(lock), "--no-installed")
    assert r.returncode == 0, r.stderr


def test_an_installed_compromised_version_fails(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "litellm-1.82.7.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: litellm\nVersion: 1.82.7\n")
    env_code = (f"import sys; sys.path.insert(0, {str(site)!r}); sys.argv=['x', '--lock', {str(tmp_path / 'none')!r}];"
                f" import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    (tmp_path / "none").write_text("")
    r = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "litellm==1.82.7" in r.stderr


def test_a_malformed_denylist_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "deny.txt"
    bad.write_text("litellm>=1\n")
    assert _run("--denylist", str(bad), "--no-installed").returncode == 2


def test_the_repository_lock_is_clean_and_hashed() -> None:
    lock = ROOT / "requirements.lock"
    if not lock.exists():
        return
    assert _run("--lock", str(lock), "--no-installed").returncode == 0
    pins = [ln for ln in lock.read_text().splitlines() if "==" in ln and not ln.lstrip().startswith("#")]
    assert pins
    assert lock.read_text().count("--hash=sha256:") >= len(pins)
