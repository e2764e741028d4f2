"""The page's bundled files: Jinja2 templates rendered into responses, and the static files.

Templates are rendered with autoescaping on; the stylesheet and icons are read once into
memory, so no request touches the disk for them.

Example:
    >>> pages = Pages()
    >>> pages.render(request, "missing.html", status=404, what="No such reject")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from inspector.web import present

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def bundled(folder: str) -> resources.abc.Traversable:
    """A folder shipped inside ``inspector.web`` (``templates`` or ``static``)."""
    return resources.files("inspector.web").joinpath(folder)


def static_files() -> dict[str, tuple[bytes, str]]:
    """The stylesheet and icons by file name, as ``(body, media type)``."""
    out = {}
    for entry in bundled("static").iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_TYPES:
            out[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return out


class Pages:
    """The templates, and how a page is answered (never cached by the browser)."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(bundled("templates"))),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["clock"] = present.clock
        self.env.filters["ago"] = present.ago
        self.env.filters["seg"] = lambda value: quote(str(value), safe="")  # one URL path segment

    def render(
        self,
        request: Request,
        name: str,
        status: int = 200,
        headers: dict | None = None,
        **ctx: Any,
    ) -> HTMLResponse:
        """Template ``name`` filled with ``ctx``; every page but the login form is logged in."""
        html = self.env.get_template(name).render(
            request=request, logged_in=name != "login.html", **ctx
        )
        return HTMLResponse(
            html, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
        )

    def not_found(self, request: Request, what: str = "No such reject") -> HTMLResponse:
        """The 404 page, saying what was not found."""
        return self.render(request, "missing.html", status=404, what=what)
