"""Issue 15: the paper's path as a site with real weights runs it (ViT-H-14 + Vicuna).

One test or more per item that can be checked on a machine without a GPU, with the tiny
OpenCLIP architecture and a tiny random Llama standing in for ViT-H and Vicuna. Items 4 and
16 (int8) are tested with the ONNX export; the GPU figures come from ``bench/gpu_fidelity.py``.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.bundle import build_detector, create_bundle, load_detector
from models.image_io import list_images, read_image
from models.recipe import load_recipe, save_recipe
from tests.conftest import paste_foreign, textured

pytest.importorskip("transformers", reason="the chat needs the llm extra (transformers)")


@pytest.fixture(scope="module")
def frames(reference_dir: Path) -> list[np.ndarray]:
    return [read_image(p) for p in list_images(reference_dir)]


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.models.tiny_llm import make_tiny_llm

    return make_tiny_llm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def chat(tiny_llm_dir: Path):
    from models.chat import BatteryChat

    encoder = build_detector("tiny", "pouch cell").encoder
    return BatteryChat.from_pretrained(tiny_llm_dir, encoder, device="cpu", max_new_tokens=4)


# --- 1: the chat trains on the station's own prompt, maps and thresholds ------------------


def test_training_and_station_prompts_come_from_one_function(
    monkeypatch, chat, tiny_bundle: Path, frames
) -> None:
    from inspector.explain.chat_teacher import detector_examples
    from inspector.explain.facts import facts_from_map
    from inspector.explain.writers import batterygpt
    from inspector.explain.writers.base import INITIAL_QUESTION, RejectContext
    from models.recipe import Thresholds

    made: list[str] = []
    original = batterygpt.chat_prompt

    def spy(*args, **kwargs) -> str:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(batterygpt, "chat_prompt", spy)
    examples = detector_examples(
        load_detector(tiny_bundle), frames, load_recipe(tiny_bundle), n=2, follow_ups=0.0
    )
    assert [ex.prompt for ex in examples] == made, "training prompts are chat_prompt's"
    assert all(INITIAL_QUESTION in ex.prompt and "Measured facts:" in ex.prompt for ex in examples)

    amap = np.zeros((301, 457), np.float32)
    amap[100:160, 200:260] = 0.9
    ctx = RejectContext(facts_from_map(amap, Thresholds()), frames[0], amap)
    writer = batterygpt.BatteryGPTWriter(chat)
    with contextlib.suppress(batterygpt.WriterError):  # a random LM may say nothing
        writer.explain(ctx)
    assert writer.last_reply.prompt == made[-1], "the station asked with chat_prompt's prompt"


def test_the_recipe_thresholds_decide_what_the_training_answers_say(
    tiny_bundle: Path, frames
) -> None:
    from inspector.explain.chat_teacher import detector_examples

    detector, recipe = load_detector(tiny_bundle), load_recipe(tiny_bundle)
    verdicts = {}
    for level in (0.0, 1.0):  # every pixel above / none above
        recipe.thresholds = recipe.thresholds.model_copy(
            update={"pixel": level, "image": level, "calibrated": True}
        )
        examples = detector_examples(detector, frames, recipe, n=2, follow_ups=0.0)
        verdicts[level] = {ex.verdict for ex in examples}
        answers = " ".join(ex.answer.lower() for ex in examples)
        assert ("no defect" in answers) == (level == 1.0), answers
    assert verdicts == {0.0: {"fail"}, 1.0: {"pass"}}
    # the chat sees the detector's own map (a smoothed map with a floor, not a clean mask)
    ex = examples[0]
    with torch.no_grad():
        amap, _ = detector(ex.image[None])
    assert torch.allclose(ex.amap, amap[0], atol=1e-6)


# --- 2: one encoder copy, in the LM's precision; image tokens once per frame --------------


def test_encoder_2_is_one_shared_copy_in_the_lms_precision_and_unit_length(
    tiny_llm_dir: Path,
) -> None:
    from models.chat import BatteryChat

    encoder = build_detector("tiny", "pouch cell").encoder
    chat = BatteryChat.from_pretrained(
        tiny_llm_dir, encoder, device="cpu", dtype="float16", max_new_tokens=2
    )
    assert chat.vision.encoder is encoder
    assert {p.dtype for p in encoder.parameters()} == {torch.float16}
    assert chat.vision.image_proj.weight.dtype == torch.float32  # the trained part stays fp32
    image = torch.rand(3, 224, 224)
    assert chat.image_tokens(image, torch.zeros(224, 224)).shape == (19, 32)
    g = encoder.global_embedding(image[None].half())
    assert g.dtype == torch.float32 and torch.allclose(g.norm(dim=-1), torch.ones(1), atol=1e-3)


def test_image_tokens_are_computed_once_per_frame(chat) -> None:
    seen = []
    handle = chat.vision.register_forward_hook(lambda *_: seen.append(1))
    try:
        image, amap = torch.rand(3, 224, 224), torch.zeros(224, 224)
        history: list[dict] = []
        for question in ("Is there any anomaly?", "Where is it?", "How big is it?"):
            reply = chat.reply(image, amap, "SYS", history, question)
            history += [
                {"role": "user", "text": question},
                {"role": "assistant", "text": reply.text},
            ]
        assert len(seen) == 1
        chat.reply(image, amap + 0.5, "SYS", [], "Is there any anomaly?")
        assert len(seen) == 2, "another map is another set of tokens"
    finally:
        handle.remove()


# --- 3: precision ---------------------------------------------------------------------


def test_auto_precision_is_fp16_on_gpus_that_have_bf16(monkeypatch) -> None:
    from inspector.runtime.backends.torch_backend import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("auto", torch.device("cuda")) is torch.float16


def test_under_bf16_autocast_the_head_after_the_encoder_stays_fp32(tiny_bundle: Path) -> None:
    det = load_detector(tiny_bundle)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        taps = [t * 40.0 for t in det.encoder(x)]  # residual-stream sized values
        exact_logits = det.decoder(taps, det.text_embeddings)
        exact_bank = det.memory_bank(taps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = det.decoder(taps, det.text_embeddings)
            bank = det.memory_bank(taps)
            maps = det.maps(x)
    assert all(lg.dtype == torch.float32 for lg in logits) and bank.dtype == torch.float32
    for a, b in zip(logits, exact_logits, strict=True):
        assert torch.allclose(a.softmax(-1), b.softmax(-1), atol=1e-5)
    assert torch.allclose(bank, exact_bank, atol=1e-5)
    assert maps.anomaly_map.dtype == torch.float32


def _outlier_bundle(tiny_bundle: Path, out: Path, value: float) -> Path:
    """The tiny bundle with one residual-stream channel of about ``value`` (a CLIP ViT's
    outlier channels), so every tap carries activations in the thousands."""
    from safetensors.torch import load_file, save_file

    from models.bundle_files import ENCODER_FILE
    from models.recipe import file_sha256

    shutil.copytree(tiny_bundle, out)
    enc = load_file(out / ENCODER_FILE)
    key = "visual.ln_pre.bias"
    enc[key] = enc[key].clone()
    enc[key][7] = value
    save_file(enc, out / ENCODER_FILE)
    recipe = load_recipe(out)
    recipe.encoder_sha256 = file_sha256(out / ENCODER_FILE)
    save_recipe(out, recipe)
    return out


def test_no_l2_norm_in_the_onnx_graph_squares_a_value_fp16_cannot_hold(
    tiny_bundle: Path, tmp_path: Path, frames
) -> None:
    import onnx
    import onnxruntime as ort

    from export.graph import INPUT_NAME
    from export.onnx_export import export_bundle
    from models.bundle_files import ONNX_FILE
    from models.preprocess import preprocess

    bundle = _outlier_bundle(tiny_bundle, tmp_path / "outliers", 3000.0)
    with torch.no_grad():
        taps = load_detector(bundle).encoder(torch.from_numpy(preprocess(frames[0]))[None])
    assert float(taps[-1].abs().max()) > 1000, "the taps carry activations in the thousands"
    export_bundle(bundle, int8=False)
    model = onnx.load(str(bundle / ONNX_FILE))
    squared = [n.input[0] for n in model.graph.node if n.op_type in ("ReduceL2", "ReduceSumSquare")]
    squared += [
        n.input[0]
        for n in model.graph.node
        if n.op_type == "Pow" or (n.op_type == "Mul" and n.input[0] == n.input[1])
    ]
    assert squared, "the graph normalises somewhere"
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in set(squared))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.stack([preprocess(f) for f in frames[:2]])
    values = session.run(list(set(squared)), {INPUT_NAME: x})
    worst = max(float(np.abs(v).max()) for v in values)
    assert worst < 256.0, f"a value of {worst:.0f} is squared: it overflows in FP16"


class _Kind:
    NORMALIZATION, SOFTMAX, REDUCE, ELEMENTWISE, UNARY, MATRIX_MULTIPLY = range(6)


class _Tensor:
    def __init__(self, name: str) -> None:
        self.name = name


class _Layer:
    def __init__(self, kind: int, ins: list[str], outs: list[str]) -> None:
        self.type, self._in, self._out = kind, ins, outs
        self.num_inputs, self.num_outputs = len(ins), len(outs)

    def get_input(self, i: int) -> _Tensor:
        return _Tensor(self._in[i])

    def get_output(self, i: int) -> _Tensor:
        return _Tensor(self._out[i])


class _Network:
    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self.num_layers = len(layers)

    def get_layer(self, i: int) -> _Layer:
        return self.layers[i]


def test_the_tensorrt_build_pins_the_square_and_sqrt_of_an_l2_norm_to_fp32() -> None:
    from types import SimpleNamespace

    from export.tensorrt_build import fp32_layer_indices

    trt = SimpleNamespace(LayerType=_Kind)
    network = _Network(
        [
            _Layer(_Kind.MATRIX_MULTIPLY, ["x", "w"], ["tokens"]),
            _Layer(_Kind.ELEMENTWISE, ["tokens", "tokens"], ["squares"]),  # ReduceL2 becomes
            _Layer(_Kind.REDUCE, ["squares"], ["sum"]),  # square -> reduce -> sqrt
            _Layer(_Kind.UNARY, ["sum"], ["norm"]),
            _Layer(_Kind.ELEMENTWISE, ["tokens", "norm"], ["unit"]),  # x / norm: fp16 is fine
            _Layer(_Kind.ELEMENTWISE, ["a", "b"], ["c"]),  # unrelated
        ]
    )
    assert fp32_layer_indices(trt, network) == [1, 2, 3]


# --- 5: the paper's schedule for ViT-H, early stopping ------------------------------------


def test_vit_h_trains_on_the_papers_schedule_and_small_backbones_keep_theirs() -> None:
    from models.training.train import TrainConfig

    vit = TrainConfig.for_arch("vit-h-14")
    assert vit.epochs == 80 and vit.batch_size * vit.accumulate == 32
    assert vit.samples_per_epoch == 400 and vit.patience is not None
    assert TrainConfig.for_arch("vit-h-14", epochs=3).epochs == 3
    small = TrainConfig.for_arch("effnet-lite0")
    assert (small.epochs, small.batch_size, small.patience) == (10, 8, None)


def test_early_stopping_keeps_the_best_epoch_and_the_trained_decoder_uses_every_tap(
    tmp_path: Path, frames
) -> None:
    from models.training.train import TrainConfig, train_bundle

    bundle = tmp_path / "early"
    create_bundle(bundle, "tiny", "pouch cell", seed=0)
    assert load_detector(bundle).decoder.tap_weights.tolist() == [0.0, 0.0, 0.0, 1.0]
    # a learning rate too small to change anything: no epoch beats the first
    cfg = TrainConfig(epochs=4, batch_size=4, samples_per_epoch=4, lr=1e-12, patience=1, held_out=4)
    result = train_bundle(bundle, frames, cfg, progress=False)
    assert result.stopped_early and result.best_epoch == 1
    assert len(result.held_out_auroc) == 2 and len(result.epoch_losses) == 2
    assert load_detector(bundle).decoder.tap_weights.tolist() == [1.0, 1.0, 1.0, 1.0]


# --- 6: bit depth -----------------------------------------------------------------------


def test_a_mono12_camera_with_a_recipe_without_bit_depth_is_refused_at_start(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    from inspector.sources.bit_depth import BitDepthMismatch
    from inspector.station.daemon import Daemon
    from tests.inspector.daemon_helpers import make_config

    assert load_recipe(tiny_bundle).bit_depth is None
    mono12 = {"kind": "pylon", "pixel_format": "Mono12"}
    with pytest.raises(BitDepthMismatch, match="bit_depth: 12"):
        Daemon(make_config(tmp_path, tiny_bundle, None, source=mono12))
    ok = make_config(tmp_path, tiny_bundle, None, source={**mono12, "pixel_format": "Mono8"})
    Daemon(ok).data_dir.release()


def test_the_emulated_camera_reports_its_pixel_format(monkeypatch) -> None:
    pytest.importorskip("pypylon", reason="pypylon is not installed")
    monkeypatch.setenv("PYLON_CAMEMU", "1")
    from inspector.sources.pylon import PylonSource, PylonSourceConfig

    source = PylonSource(PylonSourceConfig(pixel_format="Mono12", trigger="free_run"))
    assert source.bit_depth == 12  # configured, before opening
    try:
        source.open()
    except Exception as exc:  # the emulator of this pylon may not offer Mono12
        pytest.skip(f"the emulated camera does not open with Mono12: {exc}")
    try:
        assert source.bit_depth == 12 and source._reported_format.startswith("Mono12")
    finally:
        source.close()


def test_synthetic_defects_of_dark_mono12_frames_are_labelled(frames) -> None:
    from models.data.poisson import SyntheticDefectSet
    from models.preprocess import preprocess

    mono12 = [(f.astype(np.uint16) * 16) for f in frames]  # 12-bit data, recipe without bit_depth
    data = SyntheticDefectSet(mono12, size=224, length=16, seed=1, bit_depth=None)
    labelled = [float(data[i][1].sum()) for i in range(1, 16, 2)]
    assert sum(a > 0 for a in labelled) >= 6, labelled
    x = data[0][0].numpy()  # the model sees the frame as the station scales it: dark
    seen = preprocess(mono12[0], 224)
    assert abs(float(x.mean()) - float(seen.mean())) < 0.02 and x.max() < 0.1


# --- 7: the decoder's map on the references' scale at creation ---------------------------


def test_a_bundle_with_references_puts_the_decoder_map_on_their_scale(
    tiny_bundle: Path, frames
) -> None:
    from models.preprocess import preprocess

    recipe = load_recipe(tiny_bundle)
    assert recipe.fusion == "mean" and recipe.text_scale is not None
    det = load_detector(tiny_bundle)
    x = torch.from_numpy(np.stack([preprocess(f) for f in frames]))
    with torch.no_grad():
        peak = float(det.text_map(det.encoder(x)).max())
    assert peak == pytest.approx(0.5, abs=1e-4), "the most abnormal reference patch maps to 0.5"


# --- 8: the untrained decoder scores with CLIP's aligned tap only --------------------------


def test_an_untrained_openclip_decoder_is_the_zero_shot_matcher_of_the_last_tap() -> None:
    det = build_detector("tiny", "pouch cell")
    proj = det.encoder.visual.proj
    assert torch.equal(det.decoder.proj[-1].weight, proj.T)
    assert not any(torch.equal(lin.weight, proj.T) for lin in det.decoder.proj[:-1])
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        taps = det.encoder(x)
        last = det.decoder.abnormal_maps(taps, det.text_embeddings)[:, -1]
        assert torch.allclose(det.decoder.abnormal_map(taps, det.text_embeddings), last)


# --- 9: the paper's prompts ---------------------------------------------------------------


def test_the_normal_states_are_the_papers_four_and_extra_words_are_an_option(
    tmp_path: Path,
) -> None:
    from models.prompts import PromptSet

    paper = ["{}", "{} without flaw", "{} without defect", "{} without damage"]
    assert PromptSet("cell").normal_states == paper
    create_bundle(tmp_path / "b", "tiny", "cell")
    assert load_recipe(tmp_path / "b").prompts.normal_states == paper
    create_bundle(tmp_path / "x", "tiny", "cell", prompts=PromptSet.with_extra_states("cell"))
    assert len(load_recipe(tmp_path / "x").prompts.normal_states) == 7


# --- 10, 11: the map the loss sees, and Dice per image --------------------------------------


def test_the_loss_sees_the_map_inference_makes() -> None:
    import torch.nn.functional as F

    from models.training.losses import decoder_loss

    det = build_detector("tiny", "pouch cell")
    torch.manual_seed(0)
    with torch.no_grad():
        taps = det.encoder(torch.rand(2, 3, 224, 224))
        logits = det.decoder(taps, det.text_embeddings)[0] * 0.2  # a tap's [B, N, 2]
    # inference: softmax per patch, then bilinear (models.detector)
    patches = logits.softmax(-1)[..., 1].reshape(2, 1, 16, 16)
    p = F.interpolate(patches, size=(224, 224), mode="bilinear", align_corners=False)[:, 0]
    target = torch.zeros(2, 224, 224)
    target[:, 50:120, 60:150] = 1.0
    p = p.clamp(1e-6, 1 - 1e-6)
    focal = -(target * (1 - p) ** 2 * p.log() + (1 - target) * p**2 * (1 - p).log()).mean()
    trained = decoder_loss([logits], target, (16, 16), gamma=2.0, dice_weight=0.0)
    assert float(trained) == pytest.approx(float(focal), rel=1e-4)


def test_dice_follows_eq_4_per_image() -> None:
    from models.training.losses import dice_loss

    target = torch.zeros(2, 8, 8)
    target[:, :4] = 1
    pred = torch.stack([target[0], 1 - target[1]])  # one perfect image, one disjoint
    assert float(dice_loss(pred, target)) == pytest.approx(0.5, abs=1e-6)
    half = torch.full((1, 8, 8), 0.5)
    full = torch.ones(1, 8, 8)  # squares: 1 - 2 * 32 / (16 + 64) = 0.2
    assert float(dice_loss(half, full)) == pytest.approx(0.2, abs=1e-6)


# --- 12: answers tokenised as FastChat does -------------------------------------------------


def llama_like_tokenizer():
    """A SentencePiece-style BPE with LLaMA's runtime pipeline (prepend "▁", spaces -> "▁"),
    trained here on a few sentences: " Yes" becomes a lone "▁" then "▁Yes", as LLaMA's 29871."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "USER: Is there any anomaly in this image? ASSISTANT: Yes, one defect region.",
        "ASSISTANT: No, the pouch cell looks normal. USER: Where is it?",
        "### Human: Is there any anomaly?\n### Assistant: Yes.\n###",
    ] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=["▁"],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def text_of(tok, ids: list[int]) -> str:
    return "".join(tok.convert_ids_to_tokens(ids)).replace("▁", " ").strip()


def test_answers_carry_no_lone_space_token() -> None:
    from models.chat import answer_ids

    tok = llama_like_tokenizer()
    space = tok.convert_tokens_to_ids("▁")
    answer, tail = "Yes, one defect region.", "</Img> Is there any anomaly? ASSISTANT:"
    assert tok(" " + answer, add_special_tokens=False)["input_ids"][0] == space  # the old way
    ids = answer_ids(tok, tail, answer)
    assert ids[0] != space and ids[-1] == tok.eos_token_id
    whole = tok(f"{tail} {answer}", add_special_tokens=False)["input_ids"]  # FastChat's way
    assert whole[-(len(ids) - 1) :] == ids[:-1]
    assert text_of(tok, ids[:-1]) == answer


# --- 13: the v0 template ---------------------------------------------------------------


def test_the_v0_template_is_chosen_by_the_chat_config(chat) -> None:
    from inspector.explain.writers.settings import BatteryGPTSettings
    from models.chat import answer_ids, build_prompt

    assert BatteryGPTSettings(template="vicuna_v0").template == "vicuna_v0"
    history = [{"role": "user", "text": "Q1"}, {"role": "assistant", "text": "A1"}]
    assert build_prompt("SYS", history, "Q2", "vicuna_v0") == (
        "SYS\n### Human: <Img><ImageHere></Img> Q1\n### Assistant: A1\n"
        "### Human: Q2\n### Assistant:"
    )
    tok = llama_like_tokenizer()
    ids = answer_ids(tok, "Q1\n### Assistant:", "Yes.", "vicuna_v0")
    assert tok.eos_token_id not in ids and text_of(tok, ids) == "Yes.\n###"
    chat.template = "vicuna_v0"
    try:
        reply = chat.reply(torch.rand(3, 224, 224), torch.zeros(224, 224), "SYS", [], "Q?")
        assert "### Human:" in reply.prompt and reply.prompt.endswith("### Assistant:")
    finally:
        chat.template = "vicuna_v1"


# --- 14: colour order -------------------------------------------------------------------


def test_an_rgb_sources_rejects_are_stored_in_true_colours(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    from inspector.sources.base import Frame
    from inspector.station.daemon import Daemon
    from inspector.store.db import Store
    from tests.inspector.daemon_helpers import QueueSource, make_config, running

    bundle = tmp_path / "memory"
    shutil.copytree(tiny_bundle, bundle)
    recipe = load_recipe(bundle)
    recipe.fusion = "memory"
    recipe.thresholds.pixel = recipe.thresholds.image = 0.0  # every frame is a reject
    save_recipe(bundle, recipe)
    gray = paste_foreign(textured(301, 457, seed=6), (200, 100, 60, 60))
    bgr = cv2.merge([gray, (gray // 2).astype(np.uint8), (255 - gray).astype(np.uint8)])
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    cfg = make_config(tmp_path, bundle, None, pipeline={"channel_order": "rgb"})
    done = threading.Event()
    source = QueueSource()
    with running(Daemon(cfg, source=source, on_result=lambda *_: done.set())):
        source.push(Frame("BAD-RGB", rgb))
        assert done.wait(60)
    store = Store(cfg.data_dir)
    try:
        job = store.claim_job()
        assert job is not None, "the frame was rejected"
        assert np.array_equal(read_image(job.image_path), bgr), "stored BGR, as pages read it"
    finally:
        store.close()


# --- 15: chat training precision ----------------------------------------------------------


def test_fp16_chat_training_scales_the_loss_and_bf16_is_preferred(
    monkeypatch, tiny_llm_dir: Path
) -> None:
    from models.chat import BatteryChat, default_llm_dtype
    from models.training.chat_training import grad_scaler

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_llm_dtype("cuda") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert default_llm_dtype("cuda") == "float16"
    encoder = build_detector("tiny", "pouch cell").encoder
    half = BatteryChat.from_pretrained(tiny_llm_dir, encoder, device="cpu", dtype="float16")
    assert grad_scaler(half).is_enabled()
    full = BatteryChat.from_pretrained(tiny_llm_dir, encoder.float(), device="cpu")
    assert not grad_scaler(full).is_enabled()
