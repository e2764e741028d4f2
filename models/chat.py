"""The BatteryGPT chat: image and anomaly-map tokens placed into a Vicuna prompt.

After AnomalyGPT/BatteryGPT: *image encoder 2* (the detector's frozen image encoder; one copy,
in the LM's precision on the GPU) gives the L2-normalised global image embedding, which a linear
projection turns into one LLM input token; the *prompt learner* turns the anomaly map into 9
tokens and adds 9 learned ones. These 19 embeddings replace ``<ImageHere>`` in a Vicuna prompt
(v1.1/v1.5, or v0 as AnomalyGPT's released weights use) and go into a frozen causal language
model as ``inputs_embeds``. Earlier turns of the chat are replayed as context on every turn
(the image tokens of a frame are computed once); generation stops at EOS, at a stop string or
after ``max_new_tokens``.

The language model comes from a local folder only (``local_files_only=True``). Only the prompt
learner and the projection train (``models/training/chat_training.py``).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from models.backbones.base import Backbone

log = logging.getLogger("models.chat")

IMAGE_PLACEHOLDER = "<ImageHere>"
N_BASE_TOKENS = 9
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
    """Image encoder 2, the projection and the prompt learner.

    Encoder 2 *is* the encoder given (frozen, not copied): a ViT-H is 632 M parameters, and a
    second copy next to Vicuna would cost 2.5 GB of GPU memory in fp32.
    """

    def __init__(self, encoder: Backbone, hidden: int) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
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
            dtype = next(self.encoder.parameters()).dtype  # fp16 beside the LM on a GPU
            g = self.encoder.global_embedding(image.to(dtype))  # L2-normalised, fp32
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


@dataclass(frozen=True)
class Template:
    """How a Vicuna version writes a chat (FastChat's conversation templates).

    ``user``/``assistant`` open a turn; ``after_user`` joins a question to the next role,
    ``answer_end`` closes an answer in the history. In training an answer's target ends with
    ``target_end`` and EOS when ``eos_ends_answer`` (v1: EOS; v0: the ``###`` separator,
    a stop string).
    """

    name: str
    system_end: str
    user: str
    assistant: str
    after_user: str
    answer_end: str
    target_end: str
    eos_ends_answer: bool


TEMPLATES: dict[str, Template] = {
    # "SYS USER: q ASSISTANT: a</s>USER: ..." (Vicuna v1.1 / v1.5)
    "vicuna_v1": Template("vicuna_v1", " ", "USER: ", "ASSISTANT:", " ", "</s>", "", True),
    # "SYS\n### Human: q\n### Assistant: a\n### Human: ..." (v0, AnomalyGPT's weights)
    "vicuna_v0": Template(
        "vicuna_v0", "\n", "### Human: ", "### Assistant:", "\n", "\n", "\n###", False
    ),
}
DEFAULT_TEMPLATE = "vicuna_v1"


def template_for(name: str) -> Template:
    """Look up a template, with the valid names in the error."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(
            f"unknown chat template {name!r}; choose one of {sorted(TEMPLATES)}"
        ) from None


def build_prompt(
    system: str, history: Sequence[dict], question: str, template: str = DEFAULT_TEMPLATE
) -> str:
    """A Vicuna prompt: the image goes into the first user turn.

    ``history`` holds ``{"role": "user"|"assistant", "text": ...}`` turns, oldest first.

    Example:
        >>> build_prompt("SYS", [{"role": "user", "text": "Q1"},
        ...                      {"role": "assistant", "text": "A1"}], "Q2")
        'SYS USER: <Img><ImageHere></Img> Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:'
        >>> build_prompt("SYS", [], "Q1", "vicuna_v0")
        'SYS\\n### Human: <Img><ImageHere></Img> Q1\\n### Assistant:'
    """
    t = template_for(template)
    turns = [(r["role"], r["text"].strip()) for r in history] + [("user", question.strip())]
    parts = [system.strip() + t.system_end]
    first_user = True
    for role, text in turns:
        if role == "user":
            image = f"<Img>{IMAGE_PLACEHOLDER}</Img> " if first_user else ""
            parts.append(f"{t.user}{image}{text}{t.after_user}{t.assistant}")
            first_user = False
        else:
            parts.append(f" {text}{t.answer_end}")
    return "".join(parts)


def answer_ids(
    tokenizer, prompt_tail: str, answer: str, template: str = DEFAULT_TEMPLATE
) -> list[int]:
    """Token ids of ``answer`` (and its end) as they follow ``prompt_tail`` in one string.

    FastChat tokenises the whole conversation at once, so after ``ASSISTANT:`` a LLaMA
    SentencePiece tokenizer writes " Yes" as one token ("▁Yes"). Tokenising ``" " + answer``
    on its own gives a lone space token (29871) first, which Vicuna never emits there. The
    ids are therefore those of ``prompt_tail + " " + answer`` past the ids of
    ``prompt_tail``; the answer alone (its own dummy prefix) only when a tokenizer merges
    across that border.
    """
    t = template_for(template)
    end = t.target_end
    tail = tokenizer(prompt_tail, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{prompt_tail} {answer}{end}", add_special_tokens=False)["input_ids"]
    if list(full[: len(tail)]) == list(tail) and len(full) > len(tail):
        ids = list(full[len(tail) :])
    else:
        ids = list(tokenizer(f"{answer}{end}", add_special_tokens=False)["input_ids"])
    return [*ids, tokenizer.eos_token_id] if t.eos_ends_answer else ids


def default_llm_dtype(device: str) -> str:
    """bf16 on GPUs that have it (its range needs no loss scaling in chat training), fp16 on
    older ones, fp32 on the CPU."""
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def _dtype_keyword() -> str:
    """``from_pretrained`` takes ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers  # the optional llm extra: only the chat loads it
    from packaging.version import Version  # comes with transformers

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
        template: the prompt format, ``vicuna_v1`` or ``vicuna_v0`` (``TEMPLATES``).
    """

    CACHED_IMAGES = 8  # image tokens kept for the chats in progress

    def __init__(
        self,
        llm: nn.Module,
        tokenizer,
        vision: ChatVision,
        max_new_tokens: int = 256,
        stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
        temperature: float = 0.0,
        template: str = DEFAULT_TEMPLATE,
    ) -> None:
        self.template = template_for(template).name
        self._tokens: OrderedDict[str, torch.Tensor] = OrderedDict()
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
        from transformers import AutoModelForCausalLM, AutoTokenizer  # the optional llm extra

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        llm_path = Path(llm_path)
        if not (llm_path / "config.json").is_file():
            raise FileNotFoundError(
                f"{llm_path} is not a transformers model folder (no config.json)"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = default_llm_dtype(device)
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
        vision = vision.to(device).eval()
        if torch_dtype != torch.float32:  # one encoder copy, in the LM's precision
            vision.encoder.to(torch_dtype)
        return cls(llm, tokenizer, vision, **kwargs)

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

    def cached_image_tokens(self, image: torch.Tensor, amap: torch.Tensor) -> torch.Tensor:
        """``image_tokens``, computed once per (frame, map) while its chat goes on."""
        h = hashlib.blake2b(digest_size=16)
        for t in (image, amap):
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        key = h.hexdigest()
        if key in self._tokens:
            self._tokens.move_to_end(key)
            return self._tokens[key]
        with torch.no_grad():
            tokens = self.image_tokens(image, amap)
        self._tokens[key] = tokens
        while len(self._tokens) > self.CACHED_IMAGES:
            self._tokens.popitem(last=False)
        return tokens

    def forget_images(self) -> None:
        """Drop cached image tokens (after the projection or prompt learner changed)."""
        self._tokens.clear()

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
        """
        return self.reply_to(
            image, amap, lambda turns: build_prompt(system, turns, question, self.template), history
        )

    def reply_to(
        self,
        image: torch.Tensor,
        amap: torch.Tensor,
        make_prompt: Callable[[list[dict]], str],
        history: Sequence[dict],
    ) -> ChatReply:
        """``reply`` with the prompt written by ``make_prompt(turns)`` (the station's
        ``chat_prompt``, which chat training uses too).

        When the prompt and ``max_new_tokens`` would not fit the model's context, the oldest
        question/answer pairs are left out (the image moves to the oldest turn kept).
        """
        tokens = self.cached_image_tokens(image, amap)
        history = [{"role": t["role"], "text": t["text"]} for t in history]
        while True:
            prompt = make_prompt(history)
            embeds, _ = self.embed_prompt(prompt, tokens)
            if embeds.shape[1] + self.max_new_tokens <= self.max_context or len(history) < 2:
                break
            history = history[2:]
        text, n_new, reason = self.generate(embeds)
        return ChatReply(text, prompt, int(embeds.shape[1]), n_new, reason)
