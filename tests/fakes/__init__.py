"""Real stand-ins for external systems, used by tests and benchmarks (never mocks of clients)."""

from tests.fakes.llm_server import FakeLLMServer

__all__ = ["FakeLLMServer"]
