"""Every section refuses unknown keys (the one strict base), and the explainer's writer names
come from the writers' registry."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from inspector.config.station import Config
from inspector.core.config_base import ConfigSection
from inspector.explain.config import ExplainerConfig
from inspector.explain.writers import WRITERS


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    """``model`` and every model its fields hold (unions and optionals included)."""
    found = {model}
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if tp not in found:
                    found |= _models(tp)
            else:
                stack.extend(getattr(tp, "__args__", ()))
    return found


def test_every_section_refuses_keys_it_does_not_know() -> None:
    sections = _models(Config)
    assert len(sections) > 15
    for section in sections:
        assert section.model_config.get("extra") == "forbid", section.__name__
    assert ConfigSection.model_config["extra"] == "forbid" and issubclass(Config, ConfigSection)


def test_the_explainer_takes_exactly_the_registered_writers() -> None:
    for name in WRITERS:
        settings = {"batterygpt": {"llm_path": "/models/vicuna"}} if name == "batterygpt" else {}
        assert ExplainerConfig.model_validate({"backend": name, **settings}).backend == name
    with pytest.raises(ValidationError, match="Input should be 'template', 'openai'"):
        ExplainerConfig.model_validate({"backend": "gpt5"})
