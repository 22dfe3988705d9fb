"""The public surface is pinned: a change here is a deliberate contract change."""

import stalwart as sw
import stalwart.engine
import stalwart.errors
import stalwart.store


def test_top_level_exports() -> None:
    for name in ("App", "Context", "Budget", "RunStatus", "WorkflowFailed", "guard", "RetryPolicy", "AgentResult"):
        assert name in sw.__all__, name
        assert hasattr(sw, name), name


def test_every_layer_exports_what_it_lists() -> None:
    for module in (sw, stalwart.engine, stalwart.store, stalwart.errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_errors_share_one_root_and_carry_retry_data() -> None:
    for name in stalwart.errors.__all__:
        obj = getattr(stalwart.errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, stalwart.errors.StalwartError), name
            err = obj.__new__(obj)
            assert isinstance(obj.code, str) and obj.code
            assert isinstance(obj.retryable, bool)
            del err


def test_run_event_stream_names() -> None:
    assert callable(sw.App.events) and "StreamLimits" in stalwart.engine.__all__
    assert "RunEvent" in stalwart.store.__all__


def test_guard_contract_names() -> None:
    assert callable(sw.guard.scan)
    assert callable(sw.guard.redact)


def test_context_contract_methods() -> None:
    for name in ("step", "tool", "sleep", "wait_signal", "now", "uuid", "random", "llm", "partial", "agent", "emit"):
        assert callable(getattr(sw.Context, name)), name


def test_import_stalwart_is_light() -> None:
    """Inside a sandbox every tool module's ``import stalwart`` is paid per call: it must pull in
    nothing heavy until a name is used (checked in a bare interpreter, as the sandbox runs it)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        f"import sys; sys.path[:0] = [{root!r}]; import stalwart, stalwart.sandbox; "
        "stalwart.sandbox.current_credential; stalwart.__version__; "
        "heavy = [m for m in ('typing', 'pydantic', 'asyncio', 'inspect', 'json', 'stalwart.engine', "
        "'stalwart.settings', 'stalwart.gateway', 'stalwart.guard') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    # and the lazy names still resolve
    check = f"import sys; sys.path[:0] = [{root!r}]; import stalwart as sw; print(sw.App.__name__)"
    out = subprocess.run([sys.executable, "-I", "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "App"
