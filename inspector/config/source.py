"""The ``source`` section: one kind of frame source, which ``kind`` picks.

The union derives from ``inspector.sources.SOURCE_KINDS``: each kind's config class lives with
its source, and a kind added there is a valid ``source`` here.

Example:
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(SourceConfig).validate_python({"kind": "video", "url": "a.mp4"}).every_nth
    1
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from inspector.sources import SOURCE_KINDS

SourceConfig = Annotated[
    Union[tuple(kind.config for kind in SOURCE_KINDS.values())],  # noqa: UP007 - a | b cannot range over rows
    Field(discriminator="kind"),
]
