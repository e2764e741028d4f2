"""Does the camera's pixel format match the bit depth the bundle scales frames by?

A Mono12 camera delivers uint16 frames whose values stop at 4095. A recipe without
``bit_depth`` divides uint16 frames by 65535, so such frames reach the model 16x too dark, and
training on them finds almost no defects (16 grey levels). The daemon checks this at start and
refuses to run with the fix in the message.

Example:
    >>> bit_depth_problem(12, None, "bundles/pouch") is not None
    True
    >>> bit_depth_problem(8, None, "bundles/pouch") is None
    True
"""

from __future__ import annotations

from pathlib import Path

PIXEL_FORMAT_BITS = {"Mono8": 8, "Mono10": 10, "Mono12": 12, "Mono16": 16}


class BitDepthMismatch(ValueError):
    """The source's frames and the bundle's recipe disagree on the significant bits."""


def pixel_format_bits(pixel_format: str) -> int:
    """Significant bits per channel of a GenICam pixel format (colour and Bayer: 8)."""
    name = pixel_format.removesuffix("Packed").removesuffix("p")
    return PIXEL_FORMAT_BITS.get(name, 8)


def bit_depth_problem(source_bits: int | None, recipe_bits: int | None, bundle) -> str | None:
    """Why frames of ``source_bits`` would be mis-scaled by a recipe of ``recipe_bits``, and
    the fix; None when they agree or the source does not say.

    8-bit frames are always divided by 255, so only deeper sources can disagree; a recipe
    without ``bit_depth`` scales 16-bit data by 65535.
    """
    if source_bits is None or source_bits <= 8:
        return None
    scaled_as = recipe_bits or 16
    if scaled_as == source_bits:
        return None
    how = "dark" if scaled_as > source_bits else "bright"
    return (
        f"the camera delivers {source_bits}-bit frames but {Path(bundle)}/recipe.yaml scales "
        f"them as {scaled_as}-bit (bit_depth: {recipe_bits}); frames would reach the model "
        f"{2 ** abs(scaled_as - source_bits)}x too {how}. "
        f"Set 'bit_depth: {source_bits}' in the recipe (or recreate the bundle with "
        f"--bit-depth {source_bits}) and retrain/calibrate it on such frames"
    )


def check_bit_depth(source_bits: int | None, recipe_bits: int | None, bundle) -> None:
    """Raise ``BitDepthMismatch`` (a user error: one line, exit 2) when they disagree."""
    problem = bit_depth_problem(source_bits, recipe_bits, bundle)
    if problem:
        raise BitDepthMismatch(problem)
