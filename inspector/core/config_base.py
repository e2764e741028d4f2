"""The base of every configuration section: a key the section does not know is an error.

A typo in the YAML file (``prot: 1884``) would otherwise be ignored and the default used;
refusing it stops the start with the key path instead.

Example:
    >>> class Broker(ConfigSection):
    ...     port: int = 1883
    >>> Broker.model_validate({"prot": 1884})  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    pydantic_core._pydantic_core.ValidationError: prot: Extra inputs are not permitted
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigSection(BaseModel):
    """A pydantic model that refuses unknown keys; every config section derives from it."""

    model_config = ConfigDict(extra="forbid")
