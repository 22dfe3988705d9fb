"""The deployment files, validated statically (no container engine runs here): they parse, and
every command, option, port, probe path and metric they name exists in Stalwart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from stalwart.settings import ServerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
API_PORT = ServerSettings().port


def _command(name: str) -> Any:
    from stalwart.cli import cli

    root: Any = typer.main.get_command(cli)
    if name in root.commands:
        return root.commands[name]
    if name == "server":  # until the lead registers it, the command lives in stalwart.api
        from stalwart.api._cli import server

        app = typer.Typer()
        app.command()(server)
        return typer.main.get_command(app)
    raise AssertionError(f"`stalwart {name}` is not a command")


def _check_args(args: list[str]) -> dict[str, str]:
    """``args`` after ``stalwart``: the command exists and accepts every option given; returns them."""
    cmd = _command(args[0])
    known = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    given: dict[str, str] = {}
    i = 1
    while i < len(args):
        a = args[i]
        assert a.startswith("-"), f"unexpected argument {a!r} in {args}"
        assert a in known, f"`stalwart {args[0]}` has no option {a} (has {sorted(known)})"
        param = next(p for p in cmd.params if a in getattr(p, "opts", []))
        if getattr(param, "is_flag", False):
            given[a] = "true"
            i += 1
        else:
            given[a] = args[i + 1]
            i += 2
    return given


def _scrapable(addr: str | None) -> bool:
    """Whether a ``--metrics-addr`` value can be reached from another host (``None``: the default)."""
    import ipaddress

    if addr is None:  # the option's own default
        addr = next(p.default for p in _command("worker").params if "--metrics-addr" in getattr(p, "opts", []))
    try:
        return not ipaddress.ip_address(str(addr)).is_loopback
    except ValueError:
        return str(addr) not in ("localhost",)


def _routes() -> set[str]:
    import stalwart as sw
    from stalwart.api import create_app

    api = create_app(sw.App("deploy-check", db="sqlite:///:memory:"))
    return set(api.openapi()["paths"])


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_dockerfile_is_multistage_pinned_non_root_and_runs_real_commands() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", base.group(1)), (
        "base not pinned by digest"
    )
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2 and all("${PYTHON_IMAGE}" in f for f in froms), (
        "not multi-stage on the pinned base"
    )
    assert "COPY --from=build" in text
    final = text[text.rindex("FROM ") :]
    user = re.search(r"^USER (\S+)$", final, re.MULTILINE)
    assert user and user.group(1).split(":")[0] not in ("0", "root")
    assert re.search(rf"^EXPOSE .*\b{API_PORT}\b", final, re.MULTILINE)
    entry = re.search(r"^ENTRYPOINT \[(.*)\]$", final, re.MULTILINE)
    cmd = re.search(r"^CMD \[(.*)\]$", final, re.MULTILINE)
    assert entry and cmd
    entry_args = [a.strip().strip('"') for a in entry.group(1).split(",")]
    assert entry_args[-1] == "stalwart"
    args = [a.strip().strip('"') for a in cmd.group(1).split(",")]
    assert _check_args(args)["--port"] == str(API_PORT)
    health = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", text)
    assert health and int(health.group(1)) == API_PORT and health.group(2) in _routes()


def test_compose_has_the_stack_and_real_commands() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert {"postgres", "redis", "api", "worker", "prometheus"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 2
    api_opts = _check_args(services["api"]["command"])
    assert "--no-worker" in api_opts and api_opts["--port"] == str(API_PORT)
    assert services["api"]["ports"] == [f"{API_PORT}:{API_PORT}"]
    worker_opts = _check_args(services["worker"]["command"])
    _check_args(services["migrate"]["command"])
    prom = yaml.safe_load(doc["configs"]["prometheus"]["content"])
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["stalwart-api"]["static_configs"][0]["targets"] == [f"api:{API_PORT}"]
    assert jobs["stalwart-api"]["metrics_path"] in _routes()
    assert jobs["stalwart-worker"]["dns_sd_configs"][0]["port"] == int(worker_opts["--metrics-port"])
    assert _scrapable(worker_opts.get("--metrics-addr")), "worker metrics bound where Prometheus cannot reach"
    for mount in services["prometheus"]["volumes"]:
        assert (DEPLOY / mount.split(":")[0]).resolve().is_file(), mount
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["STALWART_DB"].startswith("postgresql://") and "@postgres:5432/" in env["STALWART_DB"]
        assert env["STALWART_REDIS_URL"].startswith("redis://redis:6379")


def test_kubernetes_manifests() -> None:
    from stalwart.telemetry import METRIC_NAMES

    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _docs(f)]
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    assert set(deployments) == {"stalwart-api", "stalwart-worker"}
    routes = _routes()
    for name, dep in deployments.items():
        spec = dep["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        (container,) = pod["containers"]
        opts = _check_args(container["args"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container:
                get = container[probe]["httpGet"]
                assert get["path"] in routes and ports[get["port"]] == int(opts["--port"])
        if name == "stalwart-api":
            assert "--no-worker" in opts and ports["http"] == API_PORT and "readinessProbe" in container
        else:
            assert ports["metrics"] == int(opts["--metrics-port"])
            notes = spec["template"]["metadata"]["annotations"]
            assert notes["prometheus.io/scrape"] == "true" and int(notes["prometheus.io/port"]) == ports["metrics"]
            assert notes["prometheus.io/path"] in routes
            addr = opts.get("--metrics-addr")
            if addr == "$(POD_IP)":  # Kubernetes expands it from the container's env
                env = {e["name"]: e for e in container.get("env", [])}
                assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            else:
                assert _scrapable(addr), f"worker metrics bound to {addr!r}: unreachable from Prometheus"
    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "stalwart-worker"
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    assert metric in METRIC_NAMES, f"HPA scales on {metric!r}, which Stalwart does not export"
    pdbs = by_kind["PodDisruptionBudget"]
    assert len(pdbs) == 2
    for pdb in pdbs:
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            sel.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments.values()
        )
    (svc,) = by_kind["Service"]
    assert (
        svc["spec"]["selector"].items()
        <= deployments["stalwart-api"]["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("bad", [["server", "--bogus"], ["nonexistent"]])
def test_the_checker_itself_rejects_wrong_commands(bad: list[str]) -> None:
    with pytest.raises(AssertionError):
        _check_args(bad)
