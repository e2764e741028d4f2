"""The BatteryGPT chat: image and anomaly-map tokens placed into a Vicuna prompt.

After AnomalyGPT/BatteryGPT: *image encoder 2* (a frozen copy of the detector's image encoder)
gives the global image embedding, which a linear projection turns into one LLM input token;
the *prompt learner* turns the anomaly map into 9 tokens and adds 9 learned ones. These 19
embeddings replace ``<ImageHere>`` in a Vicuna v1.1/v1.5 prompt and go into a frozen causal
language model as ``inputs_embeds``. Earlier turns of the chat are replayed as context on every
turn; generation stops at EOS, at a stop string or after ``max_new_tokens``.

The language model comes from a local folder only (``local_files_only=True``). Only the prompt
learner and the projection train (``models/chat_training.py``).
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from models.backbones.base import Backbone

log = logging.getLogger("models.chat")

IMAGE_PLACEHOLDER = "<ImageHere>"
N_MAP_TOKENS = 9
N_BASE_TOKENS = 9
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
DEFAULT_STOP_STRINGS = ("</s>", "USER:", "###")


class PromptLearner(nn.Module):
    """Anomaly map ``[B, 1, S, S]`` -> ``[B, 18, hidden]``: 9 learned base tokens, then 9 from
    the map (AnomalyGPT's conv stack: five conv-ReLU-maxpool stages 224 -> 7, a 5x5 conv to
    3x3).

    Example:
        >>> PromptLearner(hidden=32)(torch.zeros(2, 1, 224, 224)).shape
        torch.Size([2, 18, 32])
    """

    def __init__(self, hidden: int, channels: Sequence[int] = (4, 16, 64, 256, 1024)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        layers.append(nn.Conv2d(c_in, hidden, 5))
        self.meta_net = nn.Sequential(*layers)
        self.base_prompts = nn.Parameter(torch.randn(N_BASE_TOKENS, hidden) * 0.02)
        self.hidden = hidden

    def forward(self, amap: torch.Tensor) -> torch.Tensor:
        if amap.shape[-2:] != (224, 224):
            amap = F.interpolate(amap, size=(224, 224), mode="bilinear", align_corners=False)
        x = self.meta_net(amap)  # [B, hidden, 3, 3]
        tokens = x.flatten(2).transpose(1, 2)  # [B, 9, hidden]
        return torch.cat([self.base_prompts.expand(x.shape[0], -1, -1), tokens], dim=1)


class ChatVision(nn.Module):
    """Image encoder 2 (frozen copy of encoder 1), the projection and the prompt learner."""

    def __init__(self, encoder: Backbone, hidden: int) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder).eval().requires_grad_(False)
        embed_dim = encoder.embed_dim
        self.image_proj = nn.Linear(embed_dim, hidden)
        self.prompt_learner = PromptLearner(hidden)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What ``chat_training`` learns (encoder 2 stays equal to encoder 1)."""
        return {
            **{f"image_proj.{k}": v for k, v in self.image_proj.state_dict().items()},
            **{f"prompt_learner.{k}": v for k, v in self.prompt_learner.state_dict().items()},
        }

    def forward(self, image: torch.Tensor, amap: torch.Tensor) -> torch.Tensor:
        """``image [B, 3, S, S]`` (preprocessed) and ``amap [B, S, S]`` -> ``[B, 19, hidden]``."""
        with torch.no_grad():
            g = self.encoder.global_embedding(image)  # L2-normalised, as AnomalyGPT
        image_token = self.image_proj(g.float())[:, None]
        return torch.cat([image_token, self.prompt_learner(amap[:, None].float())], dim=1)


def save_chat_weights(vision: ChatVision, path: str | Path) -> Path:
    """Write the trained projection and prompt learner (safetensors, atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in vision.trainable_state_dict().items()}
    save_file(tensors, tmp, metadata={"hidden": str(vision.prompt_learner.hidden)})
    tmp.replace(path)
    return path


def load_chat_weights(vision: ChatVision, path: str | Path) -> None:
    """Load weights written by ``save_chat_weights``; a size mismatch says which model it fits."""
    tensors = load_file(str(path))
    proj = {k.removeprefix("image_proj."): v for k, v in tensors.items() if "image_proj." in k}
    learner = {
        k.removeprefix("prompt_learner."): v for k, v in tensors.items() if "prompt_learner." in k
    }
    if proj["weight"].shape != vision.image_proj.weight.shape:
        raise ValueError(
            f"{path} was trained for an LLM/encoder of shape {tuple(proj['weight'].shape)}, "
            f"this one needs {tuple(vision.image_proj.weight.shape)}"
        )
    vision.image_proj.load_state_dict(proj)
    vision.prompt_learner.load_state_dict(learner)


@dataclass
class ChatReply:
    """One answer and how it was produced."""

    text: str
    prompt: str  # the full prompt text, ``<ImageHere>`` where the 19 image embeddings went
    n_prompt_tokens: int  # input embeddings, image tokens included
    n_new_tokens: int
    stop_reason: str  # "eos" | "stop_string" | "max_new_tokens"


def build_prompt(system: str, history: Sequence[dict], question: str) -> str:
    """A Vicuna v1.1/v1.5 prompt: the image goes into the first user turn.

    ``history`` holds ``{"role": "user"|"assistant", "text": ...}`` turns, oldest first.

    Example:
        >>> build_prompt("SYS", [{"role": "user", "text": "Q1"},
        ...                      {"role": "assistant", "text": "A1"}], "Q2")
        'SYS USER: <Img><ImageHere></Img> Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:'
    """
    turns = [(t["role"], t["text"].strip()) for t in history] + [("user", question.strip())]
    parts = [system.strip() + " "]
    first_user = True
    for role, text in turns:
        if role == "user":
            image = f"<Img>{IMAGE_PLACEHOLDER}</Img> " if first_user else ""
            parts.append(f"USER: {image}{text} ASSISTANT:")
            first_user = False
        else:
            parts.append(f" {text}</s>")
    return "".join(parts)


def _dtype_keyword() -> str:
    """``from_pretrained`` takes ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _cache_keyword(llm: nn.Module) -> str:
    """transformers 5 calls the KV cache ``cache``; 4.x ``past_key_values``."""
    params = inspect.signature(llm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class BatteryChat:
    """A frozen causal LM plus ``ChatVision``; ``reply`` answers one turn of a chat.

    Args:
        llm: a transformers causal LM (Vicuna v1.5 in production, a tiny Llama in tests).
        tokenizer: its tokenizer (needs ``bos_token_id`` and ``eos_token_id``).
        vision: image encoder 2, projection and prompt learner, sized for the LLM.
        max_new_tokens: hard cap on an answer's length.
        stop_strings: an answer ends before the first of these.
        temperature: 0 for greedy decoding, else sampling at this temperature.
    """

    def __init__(
        self,
        llm: nn.Module,
        tokenizer,
        vision: ChatVision,
        max_new_tokens: int = 256,
        stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
        temperature: float = 0.0,
    ) -> None:
        self.llm = llm.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.vision = vision
        self.max_new_tokens = max_new_tokens
        self.stop_strings = tuple(stop_strings)
        self.temperature = temperature
        self._cache_kw = _cache_keyword(llm)
        self.max_context = int(getattr(llm.config, "max_position_embeddings", 4096))

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    @classmethod
    def from_pretrained(
        cls,
        llm_path: str | Path,
        encoder: Backbone,
        chat_weights: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        **kwargs,
    ) -> BatteryChat:
        """Load the LM and tokenizer from a local folder; ``encoder`` becomes encoder 2.

        Without ``chat_weights`` the projection and prompt learner are untrained (random):
        the words then come from the facts in the prompt alone.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        llm_path = Path(llm_path)
        if not (llm_path / "config.json").is_file():
            raise FileNotFoundError(
                f"{llm_path} is not a transformers model folder (no config.json)"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "float16" if device == "cuda" else "float32"
        torch_dtype = getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(llm_path, local_files_only=True)
        llm = AutoModelForCausalLM.from_pretrained(
            llm_path, local_files_only=True, **{_dtype_keyword(): torch_dtype}
        ).to(device)
        vision = ChatVision(encoder, int(llm.config.hidden_size))
        if chat_weights is not None:
            load_chat_weights(vision, chat_weights)
        else:
            log.warning("no chat weights: the prompt learner and projection are untrained")
        return cls(llm, tokenizer, vision.to(device).eval(), **kwargs)

    # --- prompt -> input embeddings ----------------------------------------------------

    def _ids(self, text: str, bos: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ([self.tokenizer.bos_token_id] if bos else []) + list(ids)

    def embed_prompt(self, prompt: str, image_tokens: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``[1, T, hidden]`` input embeddings of a prompt with ``image_tokens [19, hidden]`` in
        place of ``<ImageHere>``; also returns the index where the image tokens start."""
        before, sep, after = prompt.partition(IMAGE_PLACEHOLDER)
        embed = self.llm.get_input_embeddings()
        ids_before = torch.tensor(self._ids(before, bos=True), device=self.device)
        parts = [embed(ids_before)]
        if sep:
            parts.append(image_tokens.to(self.device, self.dtype))
            ids_after = torch.tensor(self._ids(after, bos=False), device=self.device)
            parts.append(embed(ids_after))
        return torch.cat(parts, dim=0)[None], len(ids_before)

    def image_tokens(self, image: torch.Tensor, amap: torch.Tensor) -> torch.Tensor:
        """``[19, hidden]``: the projected global embedding, then the prompt learner's 18."""
        dev = next(self.vision.parameters()).device
        return self.vision(image[None].to(dev), amap[None].to(dev))[0]

    # --- generation ----------------------------------------------------------------------

    def _next_token(self, logits: torch.Tensor) -> int:
        if self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        return int(torch.multinomial(probs, 1))

    @torch.no_grad()
    def generate(self, inputs_embeds: torch.Tensor) -> tuple[str, int, str]:
        """Greedy (or sampled) decoding with the KV cache: ``(text, new tokens, stop reason)``."""
        eos = self.tokenizer.eos_token_id
        out = self.llm(inputs_embeds=inputs_embeds, use_cache=True)
        ids: list[int] = []
        reason = "max_new_tokens"
        text = ""
        for _ in range(self.max_new_tokens):
            token = self._next_token(out.logits[0, -1])
            if token == eos:
                reason = "eos"
                break
            ids.append(token)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            hits = [text.index(s) for s in self.stop_strings if s and s in text]
            if hits:
                text, reason = text[: min(hits)], "stop_string"
                break
            cache = out[self._cache_kw]
            step = torch.tensor([[token]], device=self.device)
            out = self.llm(input_ids=step, use_cache=True, **{self._cache_kw: cache})
        return text.strip(), len(ids), reason

    def reply(
        self,
        image: torch.Tensor,
        amap: torch.Tensor,
        system: str,
        history: Sequence[dict],
        question: str,
    ) -> ChatReply:
        """Answer ``question`` about one image, replaying ``history`` as context.

        Args:
            image: the preprocessed frame ``[3, S, S]``.
            amap: its anomaly map ``[S, S]`` in [0, 1].
            system: the system prompt (role, rules and the region facts).
            history: earlier turns, ``{"role", "text"}``, oldest first.
            question: the new user message.

        When the prompt and ``max_new_tokens`` would not fit the model's context, the oldest
        question/answer pairs are left out (the image moves to the oldest turn kept).
        """
        with torch.no_grad():
            tokens = self.image_tokens(image, amap)
        history = list(history)
        while True:
            prompt = build_prompt(system, history, question)
            embeds, _ = self.embed_prompt(prompt, tokens)
            if embeds.shape[1] + self.max_new_tokens <= self.max_context or len(history) < 2:
                break
            history = history[2:]
        text, n_new, reason = self.generate(embeds)
        return ChatReply(text, prompt, int(embeds.shape[1]), n_new, reason)
