"""The paper's path on a GPU, with random weights: ViT-H-14 precision and detector + chat memory.

What the engineer guide's "paper's path" section computes, measured (issue 15):

1. A ViT-H-14 bundle with random weights (no checkpoint needed) and 8 procedural references,
   run through the torch backend in fp32, fp16, bf16 and ``auto``: the largest and mean map
   difference against fp32, and the latency of batch 8.
2. The detector's GPU memory, then a chat beside it: a Llama with Vicuna-7B's shapes and
   random fp16 weights, encoder 2 shared in fp16, one answer with a realistic facts prompt
   (peak memory, tokens per second), and one chat-training example in bf16 (peak memory,
   seconds per example, extrapolated to 1,000 steps of 4).

    .venv/bin/python -m bench.gpu_fidelity --out /tmp/gpu_fidelity.json

Needs CUDA and about 40 GB of GPU memory; prints every figure and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

GIB = 2**30


def _gib(n: float) -> float:
    return round(n / GIB, 2)


def vit_h_bundle(work: Path, n_refs: int = 8) -> Path:
    """A ViT-H-14 bundle with random weights (the checkpoint's shapes) and procedural refs."""
    from models.backbones import clip_loader
    from models.bundle import create_bundle
    from models.data.synth import render

    spec = clip_loader.OPENCLIP_ARCHS["vit-h-14"]
    clip_loader.OPENCLIP_ARCHS["vit-h-14"] = clip_loader.ArchSpec(
        spec.name, spec.openclip_name, False
    )
    try:
        refs = [render("pouch", seed, size=(448, 448))[0] for seed in range(n_refs)]
        create_bundle(work / "vit-h", "vit-h-14", "pouch cell", reference_images=refs)
    finally:
        clip_loader.OPENCLIP_ARCHS["vit-h-14"] = spec
    return work / "vit-h"


def frames(n: int = 8) -> np.ndarray:
    from models.data.synth import render
    from models.preprocess import preprocess

    return np.stack([preprocess(render("pouch", 100 + i, size=(448, 448))[0]) for i in range(n)])


def precision_check(bundle: Path) -> dict:
    """Map differences against fp32 and latency of batch 8, per precision."""
    from inspector.runtime.backends.torch_backend import TorchBackend

    x = frames()
    out: dict = {}
    reference = None
    for precision in ("fp32", "fp16", "bf16", "auto"):
        backend = TorchBackend(bundle, "cuda", precision)
        torch.cuda.reset_peak_memory_stats()
        maps, _ = backend.infer(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            maps, scores = backend.infer(x)
        torch.cuda.synchronize()
        row = {
            "ms_batch8": round((time.perf_counter() - t0) / 5 * 1e3, 1),
            "peak_gib": _gib(torch.cuda.max_memory_allocated()),
        }
        if reference is None:
            reference = maps
        else:
            diff = np.abs(maps - reference)
            row |= {"max_map_diff": float(diff.max()), "mean_map_diff": float(diff.mean())}
        out[precision] = row
        print(f"torch backend {precision}: {row}")
        del backend
        torch.cuda.empty_cache()
    return out


def llama_7b_shaped(dtype: torch.dtype):
    """A Llama with Vicuna-7B's shapes and random weights, created on the GPU in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    )
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    return model.eval()


def byte_tokenizer():
    """A byte-level tokenizer (ids < 32000) standing in for Vicuna's. It writes about 3-4x
    more tokens than LLaMA's for English, so the measured answer and training memory are an
    upper bound."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in pre_tokenizers.ByteLevel.alphabet():
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def chat_check(bundle: Path) -> dict:
    """Detector + chat in one process: memory, one answer, one training example."""
    from inspector.explain.facts import facts_from_map
    from inspector.explain.writers.base import INITIAL_QUESTION
    from inspector.explain.writers.batterygpt import chat_prompt
    from models.bundle import load_detector
    from models.chat import BatteryChat, ChatVision
    from models.recipe import Thresholds
    from models.training.chat_training import Example, example_loss

    out: dict = {}
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    detector = load_detector(bundle, "cuda")
    out["detector_fp32_gib"] = _gib(torch.cuda.memory_allocated())
    tokenizer = byte_tokenizer()
    for dtype in (torch.float16, torch.bfloat16):
        llm = llama_7b_shaped(dtype)
        vision = ChatVision(detector.encoder, 4096).cuda()
        vision.encoder.to(dtype)  # one shared copy, in the LM's precision
        chat = BatteryChat(llm, tokenizer, vision, max_new_tokens=256)
        name = "fp16" if dtype == torch.float16 else "bf16"
        out[f"detector_and_chat_{name}_gib"] = _gib(torch.cuda.memory_allocated())
        amap = np.zeros((2048, 2448), np.float32)
        amap[300:420, 900:1100] = 0.8
        amap[1500:1520, 200:900] = 0.7
        facts = facts_from_map(amap, Thresholds(), 0.05, "pouch cell")
        prompt = chat_prompt(facts, [], INITIAL_QUESTION)
        image = torch.from_numpy(frames(1)[0])
        amap_t = torch.zeros(224, 224)
        if dtype == torch.float16:
            torch.cuda.reset_peak_memory_stats()
            chat.stop_strings = ()  # random weights: generate all 256 tokens
            t0 = time.perf_counter()
            reply = chat.reply_to(image, amap_t, lambda _turns, p=prompt: p, [])
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            out["answer"] = {
                "prompt_tokens": reply.n_prompt_tokens,
                "new_tokens": reply.n_new_tokens,
                "seconds": round(dt, 2),
                "peak_gib": _gib(torch.cuda.max_memory_allocated()),
            }
            print(f"one answer, fp16 LM: {out['answer']}")
        else:
            ex = Example(image, amap_t, prompt, "Yes, two defect regions. " * 6, "fail")
            params = [*vision.image_proj.parameters(), *vision.prompt_learner.parameters()]
            opt = torch.optim.Adam(params, lr=1e-4)
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                example_loss(chat, ex).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            per = float(np.median(times[1:]))
            out["training"] = {
                "seconds_per_example": round(per, 3),
                "minutes_1000_steps_of_4": round(per * 4000 / 60, 1),
                "peak_gib": _gib(torch.cuda.max_memory_allocated()),
            }
            print(f"chat training, bf16 LM: {out['training']}")
        del chat, llm
        vision.encoder.float()
        torch.cuda.empty_cache()
    print(f"memory: {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_fidelity.json"))
    parser.add_argument("--skip-chat", action="store_true", help="the precision check only")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu_fidelity needs a CUDA GPU")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(),
        "host": platform.node(),
        "torch": torch.__version__,
        "command": "python -m bench.gpu_fidelity",
    }
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bundle = vit_h_bundle(Path(tmp))
        print(f"ViT-H-14 bundle (random weights) made in {time.perf_counter() - t0:.0f} s")
        report["precision"] = precision_check(bundle)
        if not args.skip_chat:
            report["chat"] = chat_check(bundle)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
