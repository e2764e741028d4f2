"""The batterygpt writer: facts in the system prompt, image and map from the reject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the batterygpt writer needs the llm extra")

from inspector.explain.config import ExplainerConfig  # noqa: E402
from inspector.explain.facts import facts_from_map  # noqa: E402
from inspector.explain.writers import RejectContext, WriterError, create_writer  # noqa: E402
from models.recipe import Thresholds  # noqa: E402
from tests.conftest import textured  # noqa: E402
from tests.models.tiny_llm import make_tiny_llm  # noqa: E402


def test_batterygpt_writer_grounds_a_multi_turn_chat_in_the_facts(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    llm = make_tiny_llm(tmp_path / "llm")
    cfg = ExplainerConfig.model_validate(
        {"backend": "batterygpt", "batterygpt": {"llm_path": llm, "max_new_tokens": 4}}
    )
    writer = create_writer(cfg, bundle=tiny_bundle)
    amap = np.zeros((301, 457), np.float32)
    amap[20:60, 210:250] = 0.9
    ctx = RejectContext(
        facts_from_map(amap, Thresholds(), 0.1, "pouch cell"), textured(301, 457), amap
    )

    history: list[dict] = []
    for question in ("Is there any anomaly?", "How big is it?", "What shape is it?"):
        try:
            answer = writer.reply(ctx, history, question)
        except WriterError as exc:  # random weights may say EOS first; that is an error here
            assert "empty answer" in str(exc)
            answer = "-"
        history += [{"role": "user", "text": question}, {"role": "assistant", "text": answer}]
        prompt = writer.last_reply.prompt
        system = prompt.split(" USER:")[0]
        assert "Region 1: upper centre" in system and "16.00 mm^2" in system  # facts, 40x40 px
        assert prompt.endswith(f"{question} ASSISTANT:")
    assert "</Img> Is there any anomaly? ASSISTANT:" in prompt and "How big is it?" in prompt
    assert writer.last_reply.n_new_tokens <= 4

    with pytest.raises(WriterError, match="image and anomaly map"):
        writer.reply(RejectContext(ctx.facts), [], "Where?")


def test_batterygpt_without_a_model_folder_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="llm_path"):
        ExplainerConfig.model_validate({"backend": "batterygpt"})
