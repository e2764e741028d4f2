"""The ``products`` section: the bundle of each product a station inspects."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from inspector.core.config_base import ConfigSection
from inspector.sources.base import PRODUCT


class ProductsConfig(ConfigSection):
    """Several products on one station: each trigger's ``product`` picks its bundle.

    Bundles are loaded at the start (``preload``) as long as they fit ``memory_budget_mb``
    and stay loaded (warm); one that does not fit is loaded at its first frame, putting the
    least recently used bundle aside. A frame whose product is not listed gets an ``error``
    result and an ``unknown_product`` alarm. Without this section the station has one bundle
    (``bundle``) and a trigger's product only labels the result.
    """

    bundles: dict[str, Path] = Field(
        min_length=1,
        description="Product name (as triggers and results spell it) -> bundle folder.",
    )
    default: str | None = Field(
        None,
        description="Product of frames that carry none (hot folder, video, a trigger without "
        "`product`); null: such a frame gets an `error` result, unless only one product is "
        "listed.",
    )
    memory_budget_mb: float = Field(
        4096.0,
        gt=0,
        description="Loaded bundles (their files' size on disk) stay within this; the least "
        "recently used one is put aside to load another. The bundle a frame needs is always "
        "loaded, even alone over the budget.",
    )
    preload: bool = Field(
        True, description="Load the bundles that fit the budget at the start, in listed order."
    )

    @field_validator("bundles")
    @classmethod
    def _names(cls, v: dict[str, Path]) -> dict[str, Path]:
        for name in v:
            if not PRODUCT.fullmatch(name):
                raise ValueError(
                    f"product name {name!r} must be 1-64 letters, digits, spaces or . _ : -"
                )
        return v

    @model_validator(mode="after")
    def _default_listed(self) -> ProductsConfig:
        if self.default is not None and self.default not in self.bundles:
            raise ValueError(f"default {self.default!r} is not one of the bundles' products")
        return self

    def default_product(self) -> str | None:
        """The product of a frame that names none: ``default``, else the only one listed."""
        if self.default is not None:
            return self.default
        return next(iter(self.bundles)) if len(self.bundles) == 1 else None
