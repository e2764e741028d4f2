"""Small request bodies, read in chunks and given up on past ``MAX_FORM_BYTES``.

An oversized body, even one sent to the open login form, cannot fill the memory.

Example:
    >>> form = await read_form(request)   # {"question": "how big is it"}   # doctest: +SKIP
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

MAX_FORM_BYTES = 65_536  # a 2000-character question in any script, url-encoded


async def read_body(request: Request) -> bytes | None:
    """A small request body, or None past ``MAX_FORM_BYTES`` (read in chunks, never more)."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return bytes(body)


async def read_form(request: Request) -> dict[str, str]:
    """A small url-encoded form body as a dict (first value of each field); empty when the
    body is past ``MAX_FORM_BYTES``."""
    body = await read_body(request)
    if body is None:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}
