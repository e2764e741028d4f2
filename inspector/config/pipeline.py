"""The ``pipeline`` section: the daemon's bounded stage queues and its batching."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inspector.core.config_base import ConfigSection


class PipelineConfig(ConfigSection):
    """Stage queues (bounded: a slow stage holds the previous one back) and batching."""

    frame_queue: int = Field(
        16, ge=1, le=10_000, description="Frames grabbed and waiting for the model, at most."
    )
    result_queue: int = Field(
        64, ge=1, le=10_000, description="Verdicts waiting to be stored and published, at most."
    )
    trigger_queue: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Triggers waiting for the camera, at most; each trigger beyond it gets an "
        "`error` result (`trigger queue full`) and a `trigger_overflow` alarm.",
    )
    max_batch: int = Field(8, ge=1, le=256, description="Frames per model call, at most.")
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="0: a batch is what waits when the model is free (a lone frame never "
        "waits); above 0: also wait this long for more frames after the first.",
    )
    channel_order: Literal["bgr", "rgb"] = Field(
        "bgr", description="Channel order of colour frames from the source."
    )
