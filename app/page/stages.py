"""The page's stages: one list, static/stages.json, that the page's scripts read too (embedded in
the page by the templates, mounted by static/views.js). Nothing else names every stage: the
templates include them in its order, the numbers are counted from it, a scene's step and a room's
state name a stage of it (app/page/scenes.py, app/schemas.py STAGES).

A stage is {"id", "part", "title", "view", "compare"}:
  id        its name everywhere: the section `stage-<id>` and its `data-stage`, the template
            templates/stages/<id with "_" for "-">.html if it has one, else templates/stages/_stage.html
            (its section and title; the view builds the rest)
  part      "lesson" (the forward pass, in order: numbered 1, 2, ... in page order), "lab" (the
            experiments and analyses beside it) or "aside" (an explanation with no view)
  title     its title's key in the catalog (static/i18n/<lang>/<namespace>.json)
  view      the module in static/ mounted on its section (mount(root, store, runKey)), or None
  compare   shown on /compare too

    stages() -> Registry     loaded once: .all (page order), .compare, .ids, [id], .data (the JSON)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from app.page.resources import data_dir

PARTS = ("lesson", "lab", "aside")
FIELDS = {"id", "part", "title", "view", "compare"}


@dataclass(frozen=True)
class Stage:
    id: str
    part: str
    title: str
    view: str | None
    compare: bool
    number: int | None  # its place among the lesson's stages, from 1; None outside the lesson

    @property
    def template(self) -> str:
        """Its partial, relative to templates/."""
        return f"stages/{self.id.replace('-', '_')}.html"


@dataclass(frozen=True)
class Registry:
    all: tuple[Stage, ...]
    data: dict  # the file as read: what the page's scripts get

    @property
    def compare(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.all if s.compare)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.all)

    def __getitem__(self, stage_id: str) -> Stage:
        for stage in self.all:
            if stage.id == stage_id:
                return stage
        raise KeyError(f"{stage_id!r} is not in static/stages.json")


def registry_path() -> Path:
    return data_dir("static") / "stages.json"


def parse(data: dict) -> Registry:
    """The registry of `data` (static/stages.json's content); a ValueError naming the entry if it is malformed."""
    stages: list[Stage] = []
    number = 0
    for i, entry in enumerate(data["stages"]):
        if set(entry) != FIELDS:
            raise ValueError(f"stages.json: stage {i}: fields {sorted(entry)}; expected {sorted(FIELDS)}")
        if entry["part"] not in PARTS:
            raise ValueError(f"stages.json: {entry['id']}: part {entry['part']!r} is not one of {PARTS}")
        if any(s.id == entry["id"] for s in stages):
            raise ValueError(f"stages.json: {entry['id']}: listed twice")
        if entry["part"] == "lesson":
            number += 1
        stages.append(Stage(number=number if entry["part"] == "lesson" else None, **entry))
    return Registry(all=tuple(stages), data=data)


@cache
def stages() -> Registry:
    return parse(json.loads(registry_path().read_text(encoding="utf-8")))
