"""Console placeholder (replaced below)."""
from pathlib import Path
from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
_HERE = Path(__file__).parent / "console"


def static_app() -> StaticFiles:
    return StaticFiles(directory=_HERE / "static")
