"""stalwart.evals — see ../shared/DESIGN.md."""

__all__: list[str] = []
