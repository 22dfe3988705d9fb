"""stalwart.governance — see ../shared/DESIGN.md."""

__all__: list[str] = []
