"""The process that runs inside the sandbox (and the call logic shared with the in-process sandbox).

Executed as a script by a bare interpreter (``python -I -S _runner.py``), so it imports the standard
library only, and lazily: ``asyncio`` alone costs ~30 ms, ``inspect`` ~4 ms, ``stalwart`` more,
against a cold-start budget of 20 ms. Plain functions are introspected through ``__code__``.

Protocol: two framed messages on stdin (4-byte big-endian length, then ``marshal`` bytes), written
by the trusted host. The *warm-up* (module, sys.path, limits) makes the runner apply the limits and
import the tool's module, then write ``READY`` (one byte) on the original stdout. The *call*
(qualname, kwargs, credential, verifier snapshot, proxy socket) arrives only when a call is made:
at once for a cold sandbox, later for one waiting in the warm pool. So a pooled sandbox has seen no
argument and no credential before its one call. One JSON reply follows the ready byte, framed
(4-byte big-endian length, then the bytes) so that the host knows it is complete without waiting
for the sandbox to exit: ``{"ok": true, "result_json": "..."}`` or ``{"ok": false, "error": {...}}`` on the original stdout,
written by the small encoder below (the ``json`` module costs ~6 ms to import; the host parses the
reply with ``json``, never ``marshal``, because the tool controls these bytes). The tool's own prints are redirected to stderr, which the host keeps a tail of.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

READY = b"R"
"""Written on the reply stream once the module is imported and the runner waits for its call."""

CTX_MODULE = "_stalwart_sandbox_ctx"
"""``sys.modules`` key of the per-invocation context (credential, verifier snapshot)."""

_NON_RETRYABLE: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    NameError,
    ImportError,
    SyntaxError,
    NotImplementedError,
    AssertionError,
    PermissionError,
    FileNotFoundError,
    IsADirectoryError,
    MemoryError,
    RecursionError,
)
_SIMPLE = (dict, list, str, int, float, bool, type(None))
_SIMPLE_NAMES = {t.__name__: t for t in _SIMPLE} | {"None": type(None)}
_CO_COROUTINE = 0x80
_EMPTY = object()
_MAX_MESSAGE = 2000


_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def dumps(value: Any) -> str:
    """JSON-encode plain data (dict with str keys, list/tuple, str, int, float, bool, None)."""
    out: list[str] = []
    _encode(value, out, 0)
    return "".join(out)


def _encode(v: Any, out: list[str], depth: int) -> None:
    if depth > 200:
        raise ValueError("result nests too deeply")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif type(v) is str:
        out.append('"' + v.translate(_ESCAPES) + '"')
    elif type(v) is int:
        out.append(int.__repr__(v))
    elif type(v) is float:
        if v != v or v in (float("inf"), float("-inf")):  # noqa: PLR0124 - NaN test without importing math
            raise ValueError("NaN and infinity are not JSON")
        out.append(float.__repr__(v))
    elif type(v) in (list, tuple):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif type(v) is dict:
        out.append("{")
        for i, (key, item) in enumerate(v.items()):
            if type(key) is not str:
                raise ValueError(f"object keys must be str, not {type(key).__name__}")
            if i:
                out.append(",")
            out.append('"' + key.translate(_ESCAPES) + '":')
            _encode(item, out, depth + 1)
        out.append("}")
    elif isinstance(v, (str, int, float, list, tuple, dict)):
        _encode(_plain(v), out, depth)
    else:
        raise ValueError(f"{type(v).__name__} is not JSON-serializable")


def _plain(v: Any) -> Any:
    if isinstance(v, bool):
        return bool(v)
    base: Any
    for base in (str, int, float, list, dict):
        if isinstance(v, base):
            return base(v)
    return list(v)


class ResultInvalid(Exception):
    """The tool returned something that does not match its return annotation."""


def error_dict(exc: BaseException) -> dict[str, Any]:
    """Describe a tool's exception; a ``StalwartError`` keeps its own type and ``retryable``."""
    for cls in type(exc).__mro__:
        if cls.__name__ == "StalwartError" and cls.__module__ == "stalwart.errors":
            try:
                d = dict(exc.to_dict())  # type: ignore[attr-defined]
                dumps(d)
                return d
            except Exception:  # noqa: BLE001 - a broken to_dict falls back to the generic shape
                break
    if isinstance(exc, ResultInvalid):
        return {
            "type": "ToolError",
            "code": "tool_result_invalid",
            "message": str(exc)[:_MAX_MESSAGE],
            "retryable": False,
            "details": {"exception": "ResultInvalid"},
        }
    name = type(exc).__name__
    return {
        "type": "ToolError",
        "code": "tool_error",
        "message": f"{name}: {exc}"[:_MAX_MESSAGE],
        "retryable": not isinstance(exc, _NON_RETRYABLE),
        "details": {"exception": name},
    }


def resolve(module: str, qualname: str) -> Callable[..., Any]:
    """Import ``module`` and walk ``qualname``; unwrap a decorated tool to its function."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    for attr in ("__stalwart_fn__", "fn", "__wrapped__"):
        inner = getattr(obj, attr, None)
        if callable(inner) and not isinstance(obj, types.FunctionType):
            obj = inner
            break
    if not callable(obj):
        raise TypeError(f"{module}:{qualname} is not callable")
    return obj  # type: ignore[no-any-return]


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The declared return type, or ``_EMPTY``."""
    ann = getattr(fn, "__annotations__", {}).get("return", _EMPTY)
    if isinstance(ann, str) and ann in _SIMPLE_NAMES:
        return _SIMPLE_NAMES[ann]
    if isinstance(ann, str):
        import typing

        ann = typing.get_type_hints(fn).get("return", _EMPTY)
    return ann


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    code = getattr(fn, "__code__", None)
    if isinstance(fn, types.FunctionType) and code is not None:
        return bool(code.co_flags & _CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn)


def _accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    code = getattr(fn, "__code__", None)
    if isinstance(fn, types.FunctionType) and code is not None:
        names = code.co_varnames[code.co_posonlyargcount : code.co_argcount + code.co_kwonlyargcount]
        return name in names
    import inspect

    param = inspect.signature(fn).parameters.get(name)
    return param is not None and param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)


def check_result(fn: Callable[..., Any], value: Any) -> Any:
    """Validate ``value`` against ``fn``'s return annotation; return its JSON-ready form.

    Plain builtins are checked by ``isinstance``; anything else goes through a pydantic
    ``TypeAdapter`` (imported only then, because it costs tens of milliseconds).
    """
    ann = return_annotation(fn)
    if ann is _EMPTY or repr(ann) == "typing.Any":
        return value
    if ann is None:
        ann = type(None)
    if ann in _SIMPLE:
        ok = isinstance(value, ann) and not (ann is int and isinstance(value, bool))
        if ann is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ResultInvalid(f"returned {type(value).__name__}, declared {ann.__name__}")
        return value
    try:
        from pydantic import TypeAdapter, ValidationError
    except ImportError as exc:
        raise ResultInvalid(f"cannot validate return type {ann!r}: pydantic is not importable") from exc
    adapter: Any = TypeAdapter(ann)
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError as exc:
        raise ResultInvalid(f"result does not match return type {ann!r}: {exc}") from None


def prepare_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], credential: str | None) -> dict[str, Any]:
    """Fill the ``credential`` keyword when the function declares it."""
    if credential is not None and "credential" not in kwargs and _accepts_keyword(fn, "credential"):
        kwargs = {**kwargs, "credential": credential}
    return kwargs


async def _await(aw: Any) -> Any:
    return await aw


def call_sync(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call a sync or async tool to completion in this thread."""
    if _is_coroutine_function(fn):
        import asyncio

        return asyncio.run(fn(**kwargs))
    out = fn(**kwargs)
    if hasattr(out, "__await__"):
        import asyncio

        return asyncio.run(_await(out))
    return out


def install_context(credential: str | None, verifier: dict[str, Any] | None) -> None:
    """Publish the credential for ``stalwart.sandbox.current_credential`` and ``verify_credential``."""
    ctx = types.ModuleType(CTX_MODULE)
    ctx.credential = credential  # type: ignore[attr-defined]
    ctx.verifier = verifier  # type: ignore[attr-defined]
    sys.modules[CTX_MODULE] = ctx


def _apply_limits(limits: dict[str, int]) -> None:
    import resource

    mb = 1024 * 1024
    pairs = [
        (resource.RLIMIT_AS, limits["memory_mb"] * mb),
        (resource.RLIMIT_CPU, limits["cpu_s"]),
        (resource.RLIMIT_NPROC, limits["uid_nproc"]),
        (resource.RLIMIT_FSIZE, limits["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    for which, value in pairs:
        hard = value + 1 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))


def _start_shim(socket_path: str) -> None:
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_shim.py")
    spec = importlib.util.spec_from_file_location("_stalwart_shim", path)
    assert spec is not None and spec.loader is not None
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    port = shim.start(socket_path)
    url = f"http://127.0.0.1:{port}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        os.environ[name] = url


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def warm_up(req: dict[str, Any]) -> BaseException | None:
    """Prepare for a call: ``sys.path`` and the tool's module imported; an import error is kept
    and reported as the call's outcome, as it would be in a cold sandbox."""
    try:
        sys.path[:0] = req.get("sys_path", [])
        importlib.import_module(req["module"])
    except BaseException as exc:  # noqa: BLE001 - everything a tool does becomes data
        return exc
    credentials = sys.modules.get("stalwart.sandbox._credentials")
    if credentials is not None:  # the module verifies credentials: do the one-time set-up now
        try:
            credentials.prime()
        except Exception:  # noqa: BLE001, S110 - only a speed-up; the call verifies for real
            pass
    return None


def run_request(req: dict[str, Any], warm_error: BaseException | None = None) -> dict[str, Any]:
    """Execute one call; never raises."""
    try:
        if warm_error is not None:
            raise warm_error
        install_context(req.get("credential"), req.get("verifier"))
        if req.get("proxy_socket"):
            _start_shim(req["proxy_socket"])
        fn = resolve(req["module"], req["qualname"])
        kwargs = req["kwargs"]
        result = check_result(fn, call_sync(fn, prepare_kwargs(fn, kwargs, req.get("credential"))))
        return {"ok": True, "result_json": dumps(result)}
    except BaseException as exc:  # noqa: BLE001 - everything a tool does becomes data
        return {"ok": False, "error": error_dict(exc)}


def frame(message: dict[str, Any]) -> bytes:
    """Encode one host-to-runner message (used by the host)."""
    import marshal

    body = marshal.dumps(message)
    return len(body).to_bytes(4, "big") + body


def _read_exact(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError("the host closed the request stream")
        out += chunk
    return bytes(out)


def _read_message(fd: int) -> dict[str, Any]:
    import marshal

    size = int.from_bytes(_read_exact(fd, 4), "big")
    return marshal.loads(_read_exact(fd, size))  # type: ignore[no-any-return]


def main() -> None:
    """Entry point inside the sandbox."""
    warm = _read_message(0)
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    _apply_limits(warm["limits"])
    warm_error = warm_up(warm)
    _write_all(reply_fd, READY)
    try:
        req = _read_message(0)
    except EOFError:
        os._exit(0)  # discarded from the pool without a call
    os.close(0)
    reply = run_request({**req, "module": warm["module"]}, warm_error)
    try:
        data = dumps(reply).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError) as exc:
        data = dumps({"ok": False, "error": error_dict(ResultInvalid(f"result is not JSON: {exc}"))}).encode()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001, S110 - the tool may have closed its streams
        pass
    _write_all(reply_fd, len(data).to_bytes(4, "big") + data)
    os._exit(0)


if __name__ == "__main__":
    main()
