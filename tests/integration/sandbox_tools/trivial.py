"""The benchmark's trivial tool: no imports beyond the standard library."""


def ping(n: int) -> int:
    return n + 1
