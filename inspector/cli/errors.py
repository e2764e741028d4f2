"""One clear line on stderr instead of a traceback for errors a user can fix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from pydantic import ValidationError

from inspector.station.datadir import DataDirError
from models.errors import MissingWeightsError
from models.image_io import ImageError

USER_ERRORS = (
    MissingWeightsError,
    ImageError,
    FileNotFoundError,
    FileExistsError,
    ValueError,
    DataDirError,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{exc.title}: " + "; ".join(parts)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line and exit status 2."""
    try:
        yield
    except ValidationError as exc:
        raise fail(_one_line(exc)) from None
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
