"""An int8 variant of an exported graph: ONNX Runtime dynamic quantisation of the encoder.

Only the backbone's weight products are quantised (a ViT's transformer-block MatMul/Gemm, a
CNN's convolutions; weights int8 per output channel, activations uint8 with a scale computed
per call). They carry almost all of the FLOPs; the decoder's cosine logits, the memory bank's
nearest-neighbour search and the smoothing stay float32 because small errors there move the
map directly.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

ENCODER_BLOCK_PREFIXES = (
    "/encoder/resblocks.",
    "/encoder/visual/transformer/resblocks.",
    "/encoder/net/",  # models.backbones.efficientnet
)
QUANTISED_OPS = ("MatMul", "Gemm", "Conv")


def encoder_weight_products(model: onnx.ModelProto) -> list[str]:
    """Names of the encoder's MatMul/Gemm/Conv nodes whose second input is a weight."""
    weights = {init.name for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in QUANTISED_OPS
        and node.name.startswith(ENCODER_BLOCK_PREFIXES)
        and len(node.input) > 1
        and node.input[1] in weights
    ]


def quantize_int8(src: str | Path, dst: str | Path, per_channel: bool = True) -> Path:
    """Write a dynamically quantised copy of ``src`` to ``dst``; returns ``dst``.

    Raises:
        ValueError: the graph has no encoder weight products to quantise.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    nodes = encoder_weight_products(model)
    del model
    if not nodes:
        raise ValueError(f"{src} has no encoder MatMul/Gemm nodes with weights to quantise")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        tmp_out = Path(tmp) / dst.name
        logging.disable(logging.WARNING)  # advice to run shape pre-processing first
        try:
            quantize_dynamic(
                src,
                tmp_out,
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.disable(logging.NOTSET)
        tmp_out.replace(dst)
    return dst
