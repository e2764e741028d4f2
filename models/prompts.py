"""The prompt ensemble: state words x templates, encoded once per product and cached.

State words and templates follow AnomalyGPT/WinCLIP as used by BatteryGPT. ``{}`` is the
product noun ("pouch cell", "battery"). The normal states are the paper's four; WinCLIP's
three extra words (``EXTRA_NORMAL_STATES``) are an option a recipe records when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

NORMAL_STATES: tuple[str, ...] = (  # the paper's list
    "{}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
EXTRA_NORMAL_STATES: tuple[str, ...] = ("flawless {}", "perfect {}", "unblemished {}")
ABNORMAL_STATES: tuple[str, ...] = (
    "broken {}",
    "damaged {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
    "{} with scratch",
    "{} with dent",
)
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a {} for anomaly detection.",
    "a photo of the {} for anomaly detection.",
)


@dataclass
class PromptSet:
    """Everything that decides the two text embeddings of a product."""

    product: str
    normal_states: list[str] = field(default_factory=lambda: list(NORMAL_STATES))
    abnormal_states: list[str] = field(default_factory=lambda: list(ABNORMAL_STATES))
    templates: list[str] = field(default_factory=lambda: list(TEMPLATES))

    @classmethod
    def with_extra_states(cls, product: str) -> PromptSet:
        """The paper's normal states plus WinCLIP's three extra words."""
        return cls(product, normal_states=[*NORMAL_STATES, *EXTRA_NORMAL_STATES])

    def sentences(self, states: list[str]) -> list[str]:
        """Every template filled with every state filled with the product noun."""
        return [t.format(s.format(self.product)) for s in states for t in self.templates]


@torch.no_grad()
def encode_prompts(clip_model: torch.nn.Module, tokenizer, prompts: PromptSet) -> torch.Tensor:
    """Encode the ensemble into a ``[2, D]`` tensor: row 0 normal, row 1 abnormal.

    Each row is the mean of its L2-normalised sentence embeddings, normalised again.

    Example:
        >>> from models.backbones.clip_loader import create_clip, tokenizer_for
        >>> emb = encode_prompts(create_clip("tiny"), tokenizer_for("tiny"), PromptSet("battery"))
        >>> tuple(emb.shape)
        (2, 64)
    """
    rows = []
    for states in (prompts.normal_states, prompts.abnormal_states):
        tokens = tokenizer(prompts.sentences(states))
        emb = clip_model.encode_text(tokens, normalize=True)
        rows.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(rows)
