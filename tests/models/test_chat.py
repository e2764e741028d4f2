"""The BatteryGPT chat with a tiny random Llama: prompt, image tokens, history and stopping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="the chat needs the llm extra (transformers)")

from models.chat import IMAGE_PLACEHOLDER, BatteryChat, ChatVision, load_chat_weights  # noqa: E402
from tests.models.tiny_llm import make_tiny_llm  # noqa: E402


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def encoder():
    from models.bundle import build_detector

    return build_detector("tiny", "pouch cell").encoder


@pytest.fixture()
def chat(tiny_llm_dir: Path, encoder) -> BatteryChat:
    return BatteryChat.from_pretrained(tiny_llm_dir, encoder, device="cpu", max_new_tokens=6)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    amap = torch.zeros(224, 224)
    amap[20:60, 90:130] = 0.9
    return torch.randn(3, 224, 224), amap


def test_encoder_2_is_encoder_1_frozen_not_a_second_copy(chat: BatteryChat, encoder) -> None:
    enc2 = chat.vision.encoder
    assert enc2 is encoder  # one copy of the (632 M-parameter for ViT-H) encoder
    assert not any(p.requires_grad for p in enc2.parameters())
    trainable = {n for n, p in chat.vision.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("image_proj", "prompt_learner")) for n in trainable)


def test_image_and_map_tokens_are_the_input_embeddings_at_the_placeholder(chat) -> None:
    image, amap = inputs()
    tokens = chat.image_tokens(image, amap)
    assert tokens.shape == (19, chat.llm.config.hidden_size)  # 1 image + 9 learned + 9 map
    prompt = f"SYS USER: <Img>{IMAGE_PLACEHOLDER}</Img> Is there any anomaly? ASSISTANT:"
    embeds, start = chat.embed_prompt(prompt, tokens)
    assert torch.equal(embeds[0, start : start + 19], tokens)
    first = chat.llm.get_input_embeddings().weight[chat.tokenizer.bos_token_id]
    assert torch.equal(embeds[0, 0], first)
    # the map changes the map tokens, not the 9 learned ones
    other = chat.image_tokens(image, torch.zeros(224, 224))
    assert torch.equal(other[1:10], tokens[1:10]) and not torch.equal(other[10:], tokens[10:])


def test_a_three_turn_chat_replays_the_earlier_turns(chat: BatteryChat) -> None:
    image, amap = inputs()
    system = "Measured facts: Defect regions 1 upper centre"
    history: list[dict] = []
    replies = []
    for question in ("Is there any anomaly?", "Where is the defect?", "How big is it?"):
        reply = chat.reply(image, amap, system, history, question)
        assert 0 < reply.n_new_tokens <= 6 or reply.stop_reason == "eos"
        replies.append(reply)
        history += [{"role": "user", "text": question}, {"role": "assistant", "text": reply.text}]

    first, second, third = replies
    assert first.prompt.startswith(system) and first.prompt.count(IMAGE_PLACEHOLDER) == 1
    assert f"Is there any anomaly? ASSISTANT: {first.text}</s>USER: Where is the defect?" in (
        second.prompt
    )
    assert third.prompt.startswith(second.prompt)
    assert f"{second.text}</s>USER: How big is it? ASSISTANT:" in third.prompt
    assert third.prompt.count(IMAGE_PLACEHOLDER) == 1  # the image is given once, in turn 1
    assert first.n_prompt_tokens < second.n_prompt_tokens < third.n_prompt_tokens


def force_token(chat: BatteryChat, word: str) -> None:
    """Make the LM always predict ``word`` (zero weights, a bias on that token)."""
    lm = chat.llm
    head = torch.nn.Linear(lm.config.hidden_size, lm.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    head.bias.data[chat.tokenizer.convert_tokens_to_ids(word)] = 10.0
    lm.lm_head = head


def test_generation_stops_at_eos_stop_strings_and_max_new_tokens(chat: BatteryChat) -> None:
    image, amap = inputs()
    force_token(chat, "two")
    r = chat.reply(image, amap, "SYS", [], "How many?")
    assert (r.text, r.n_new_tokens, r.stop_reason) == (
        "two two two two two two",
        6,
        "max_new_tokens",
    )
    force_token(chat, "</s>")
    r = chat.reply(image, amap, "SYS", [], "How many?")
    assert (r.text, r.n_new_tokens, r.stop_reason) == ("", 0, "eos")
    force_token(chat, "###")
    r = chat.reply(image, amap, "SYS", [], "How many?")
    assert (r.text, r.n_new_tokens, r.stop_reason) == ("", 1, "stop_string")


def test_chat_weights_must_fit_the_model(chat: BatteryChat, encoder, tmp_path: Path) -> None:
    from models.chat import save_chat_weights

    path = save_chat_weights(chat.vision, tmp_path / "chat.safetensors")
    other = ChatVision(encoder, hidden=chat.llm.config.hidden_size)
    load_chat_weights(other, path)
    assert torch.equal(other.image_proj.weight, chat.vision.image_proj.weight)
    with pytest.raises(ValueError, match="trained for"):
        load_chat_weights(ChatVision(encoder, hidden=48), path)


def test_a_folder_without_a_model_is_a_clear_error(encoder, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a transformers model folder"):
        BatteryChat.from_pretrained(tmp_path, encoder)


@pytest.fixture(scope="module")
def examples(tiny_bundle: Path, reference_dir: Path):
    from inspector.explain.chat_teacher import detector_examples
    from models.bundle import load_detector
    from models.image_io import list_images, read_image
    from models.recipe import load_recipe

    frames = [read_image(p) for p in list_images(reference_dir)]
    return detector_examples(load_detector(tiny_bundle), frames, load_recipe(tiny_bundle), n=4)


def test_training_lowers_the_answer_loss_and_touches_only_the_learner(
    chat: BatteryChat, examples
) -> None:
    import numpy as np

    from models.training.chat_training import train_chat

    llm_before = {k: v.clone() for k, v in chat.llm.state_dict().items()}
    enc_before = {k: v.clone() for k, v in chat.vision.encoder.state_dict().items()}
    losses = train_chat(chat, examples, steps=12, batch_size=2, lr=1e-2, progress=False)
    assert np.mean(losses[-3:]) < 0.9 * losses[0]  # long fact-based answers, 19 soft tokens
    assert all(torch.equal(v, chat.llm.state_dict()[k]) for k, v in llm_before.items())
    assert all(torch.equal(v, chat.vision.encoder.state_dict()[k]) for k, v in enc_before.items())


def test_the_training_command_writes_weights_the_chat_loads(
    tiny_bundle: Path, reference_dir: Path, tiny_llm_dir: Path, encoder, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from inspector.explain.chat_teacher import app

    out = tmp_path / "chat.safetensors"
    args = ["--bundle", str(tiny_bundle), "--llm", str(tiny_llm_dir), "--out", str(out)]
    args += ["--images", str(reference_dir), "--examples", "2"]
    result = CliRunner().invoke(
        app, [*args, "--steps", "2", "--batch-size", "1", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "2 examples from 4 image(s)" in result.output and f"wrote {out}" in result.output
    trained = BatteryChat.from_pretrained(tiny_llm_dir, encoder, chat_weights=out, device="cpu")
    fresh = BatteryChat.from_pretrained(tiny_llm_dir, encoder, device="cpu")
    assert not torch.equal(trained.vision.image_proj.weight, fresh.vision.image_proj.weight)


def test_the_training_command_says_what_is_missing(
    tiny_bundle: Path, reference_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from inspector.explain.chat_teacher import app

    args = ["--bundle", str(tiny_bundle), "--llm", str(tmp_path), "--out", str(tmp_path / "c")]
    args += ["--images", str(reference_dir), "--examples", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "is not a transformers model folder" in result.output


def test_a_chat_longer_than_the_context_drops_its_oldest_turns(chat: BatteryChat) -> None:
    image, amap = inputs()
    history = []
    for i in range(6):
        history += [
            {"role": "user", "text": f"Where is the defect? ({i})"},
            {"role": "assistant", "text": "upper centre region one"},
        ]
    full = chat.reply(image, amap, "SYS", history, "How big is it?")
    assert "(0)" in full.prompt
    chat.max_context = full.n_prompt_tokens + chat.max_new_tokens - 1  # one token short
    cut = chat.reply(image, amap, "SYS", history, "How big is it?")
    assert (
        "(0)" not in cut.prompt and "<Img><ImageHere></Img> Where is the defect? (1)" in cut.prompt
    )
    assert cut.n_prompt_tokens + chat.max_new_tokens <= chat.max_context
