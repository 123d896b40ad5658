"""Guided scenes: one JSON file per scene in static/scenes/, data a teacher can add to, never code.

A scene is a title, a summary, what GPT-2 small is known to show (with its source), the sentence
shown instead of that claim when the model has random weights, and 2 or more steps. A step sets
any of the page's state and says 2–4 sentences about it:

    {"prompt": "...", "stage": "attention", "layer": 4, "head": 11, "pinned": 3,
     "temperature": 0.7, "interventions": [{"hook": "blocks.9.attn.hook_z", "op": "zero", "head": 9}],
     "probe": true, "text": {"en": "..."}}

`"probe": true` runs the induction test (POST /api/induction-probe, with the step's interventions)
once the step is shown, and shows its answer on the heads stage.

Every text is keyed by language ({"en": "..."}; English is required, others may be added).
A step's text may hold the placeholders static/scenes.js fills from the analysis ({top_token},
{top_prob}, {second_token}, {logit_diff}, {layer}, {head}, {token}, {n_tokens}, and in a probe step
{loss_first}, {loss_second}, {loss_second_intact} (with nothing switched off) and {probe_head});
no others.

    load(path) -> Scene          one file; a SceneError naming the file and the field if it is malformed
    scenes() -> {id: Scene}      every file of the folder, by id (its file name), loaded once
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.page.resources import data_dir
from app.page.stages import stages
from app.schemas import MAX_SCENE_STEPS, SCENE_ID, InterventionSpec

PROBE_PLACEHOLDERS = frozenset({"loss_first", "loss_second", "loss_second_intact", "probe_head"})
PLACEHOLDERS = frozenset({"top_token", "top_prob", "second_token", "logit_diff", "layer", "head", "token", "n_tokens"}) | PROBE_PLACEHOLDERS


class SceneError(ValueError):
    """A scene file that cannot be used: the message names the file and the field."""


def _text(value: dict[str, str]) -> dict[str, str]:
    if "en" not in value:
        raise ValueError('needs an English text under "en"')
    for lang, text in value.items():
        if not text.strip():
            raise ValueError(f'the "{lang}" text is empty')
    return value


Text = Annotated[dict[str, str], Field(min_length=1)]


class Known(BaseModel):
    """What GPT-2 small is known to show, and where that was published."""
    model_config = ConfigDict(extra="forbid")
    text: Text
    source: str = Field(min_length=1, max_length=300)

    _check_text = field_validator("text")(_text)


class Step(BaseModel):
    """One step: the state it sets (each optional) and what it says."""
    model_config = ConfigDict(extra="forbid")
    text: Text
    prompt: str | None = Field(None, min_length=1, max_length=2000)
    stage: str | None = None
    layer: int | None = Field(None, ge=0, le=1023)
    head: int | None = Field(None, ge=0, le=1023)
    pinned: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=10)
    interventions: list[InterventionSpec] | None = None
    probe: bool = False

    @model_validator(mode="after")
    def _probe_placeholders(self) -> "Step":
        used = {name for text in self.text.values() for name in re.findall(r"\{(\w+)\}", text)} & PROBE_PLACEHOLDERS
        if used and not self.probe:
            raise ValueError(f'the text uses {sorted(used)}, which the induction test fills in: set "probe": true')
        return self

    @field_validator("text")
    @classmethod
    def _placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        _text(value)
        for lang, text in value.items():
            unknown = set(re.findall(r"\{(\w+)\}", text)) - PLACEHOLDERS
            if unknown:
                raise ValueError(f'the "{lang}" text has unknown placeholders {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}')
        return value

    @field_validator("stage")
    @classmethod
    def _stage(cls, value: str | None) -> str | None:
        known = stages().ids  # static/stages.json
        if value is not None and value not in known:
            raise ValueError(f"{value!r} is not a stage of the page (static/stages.json); one of {sorted(known)}")
        return value


class Scene(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = ""  # the file's name, set by load()
    title: Text
    summary: Text
    known: Known
    untrained: Text
    steps: list[Step] = Field(min_length=2, max_length=MAX_SCENE_STEPS)

    _check_texts = field_validator("title", "summary", "untrained")(_text)


def _where(location: tuple) -> str:
    return ".".join(str(part) for part in location) or "(the whole file)"


def load(path: Path) -> Scene:
    """The scene in `path`, or a SceneError naming the file and each faulty field."""
    name = path.name
    if not SCENE_ID.match(path.stem):
        raise SceneError(f"{name}: the file name (the scene's id) must be lower-case letters, digits and hyphens")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SceneError(f"{name}: not JSON: {error}") from None
    if not isinstance(data, dict):
        raise SceneError(f"{name}: a scene is a JSON object")
    if "id" in data:
        raise SceneError(f"{name}: id: the id is the file's name; remove this field")
    try:
        scene = Scene.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in error.errors())
        raise SceneError(f"{name}: {problems}") from None
    if scene.steps[0].prompt is None:
        raise SceneError(f"{name}: steps.0.prompt: the first step must set the prompt")
    return scene.model_copy(update={"id": path.stem})


def scenes_dir() -> Path:
    return data_dir("static") / "scenes"


@cache
def scenes() -> dict[str, Scene]:
    """Every scene of the folder by id, in file-name order."""
    return {scene.id: scene for scene in (load(path) for path in sorted(scenes_dir().glob("*.json")))}
