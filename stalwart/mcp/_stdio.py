"""The stdio transport of an MCP client session, with a bound on what the server may send.

The SDK's own ``stdio_client`` reads a message of any length, re-joining its buffer on every chunk
(the cost of one line grows with the square of its length): a hostile server answering with one
10 MB line would hold a worker's CPU for many seconds before any limit could apply. Here a message
longer than ``max_message_bytes`` ends the server at once (its whole sandbox is killed), the caller
sees ``overflowed`` set, and the next call starts a fresh server. Otherwise it speaks what the SDK
speaks: newline-delimited JSON-RPC, as :class:`mcp.shared.message.SessionMessage` streams.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["bounded_stdio"]

_GRACE_S = 2.0


@contextlib.asynccontextmanager
async def bounded_stdio(
    argv: list[str],
    *,
    max_message_bytes: int,
    on_overflow: Callable[[int], None],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    errlog: Any = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """Start ``argv`` (in a new session, so its group can be killed) and yield (read, write) streams."""
    import anyio
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    process = await anyio.open_process(argv, env=env, cwd=cwd, stderr=errlog or subprocess.DEVNULL,
                                       start_new_session=True)
    read_writer, read_stream = anyio.create_memory_object_stream[Any](0)
    write_stream, write_reader = anyio.create_memory_object_stream[Any](0)

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()

    async def reader() -> None:
        assert process.stdout is not None
        buf = bytearray()
        scanned = 0
        async with read_writer:
            try:
                async for chunk in process.stdout:
                    buf += chunk
                    while True:
                        end = buf.find(b"\n", scanned)
                        if end < 0:
                            scanned = len(buf)
                            if len(buf) > max_message_bytes:
                                on_overflow(len(buf))
                                kill()
                                return
                            break
                        line = bytes(buf[:end])
                        del buf[: end + 1]
                        scanned = 0
                        if not line.strip():
                            continue
                        try:
                            item: Any = SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
                        except ValueError as exc:
                            item = exc
                        await read_writer.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                return

    async def writer() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    assert process.stdin is not None
                    await process.stdin.aclose()
                with anyio.move_on_after(_GRACE_S):
                    await process.wait()
                kill()  # the group too: nothing the server started outlives its session
                with contextlib.suppress(Exception):
                    await process.aclose()  # reaps it and closes the pipes' transports on this loop
                for s in (read_stream, write_stream):
                    await s.aclose()
            tg.cancel_scope.cancel()
