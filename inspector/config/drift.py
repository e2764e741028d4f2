"""The ``drift`` section: the check of the line's image scores against calibration's."""

from __future__ import annotations

from pydantic import Field, model_validator

from inspector.core.config_base import ConfigSection


class DriftConfig(ConfigSection):
    """The drift check of the line's image scores against the calibration set's."""

    enabled: bool = Field(
        True, description="false: no drift check (a bundle that was never calibrated has none)."
    )
    window_cells: int = Field(
        300, ge=10, le=100_000, description="The last this many inspected cells are compared."
    )
    psi_alarm: float = Field(
        0.25, gt=0, description="Population stability index at which `score_drift` is raised."
    )
    psi_clear: float = Field(
        0.15, ge=0, description="It clears (`score_drift_cleared`) when the index falls below this."
    )

    @model_validator(mode="after")
    def _clear_below_alarm(self) -> DriftConfig:
        if self.psi_clear >= self.psi_alarm:
            raise ValueError("psi_clear must be below psi_alarm")
        return self
