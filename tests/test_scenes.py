"""Guided scenes are data: every file in static/scenes/ loads against app/page/scenes.py's schema, and
a malformed one is rejected with a message naming the file and the field."""

from __future__ import annotations

import json

import pytest

from app.page import scenes

GOOD = {
    "title": {"en": "A scene"}, "summary": {"en": "What it shows."},
    "known": {"text": {"en": "Head 4.11 attends to the previous token."}, "source": "Wang et al. 2022"},
    "untrained": {"en": "An untrained model cannot show this pattern."},
    "steps": [{"prompt": "The cat sat", "layer": 4, "head": 11, "text": {"en": "Head {layer}.{head}."}},
              {"stage": "output", "interventions": [{"hook": "blocks.9.attn.hook_z", "op": "zero", "head": 9}],
               "text": {"en": "The top token is {top_token}."}}],
}


def write(tmp_path, data, name="a-scene.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_every_scene_file_loads_and_names_what_it_sets():
    found = scenes.scenes()
    assert len(found) >= 6
    for scene_id, scene in found.items():
        assert scene.id == scene_id
        assert scene.steps[0].prompt, scene_id
        assert scene.known.source and scene.untrained["en"], scene_id
        for step in scene.steps:
            sentences = [s for s in step.text["en"].replace("…", ".").split(". ") if s.strip()]
            assert 1 <= len(sentences) <= 4, (scene_id, step.text)
    # The six, with the published heads named.
    titles = " ".join(s.known.text["en"] for s in found.values())
    for head in ("4.11", "5.1", "5.5", "6.9", "7.2", "7.10", "9.9", "9.6", "10.0"):
        assert head in titles
    ioi = next(s for s in found.values() if any(step.interventions for step in s.steps) and "Mary" in s.steps[0].prompt)
    switched = [(x.hook, x.head) for step in ioi.steps for x in step.interventions or []]
    assert ("blocks.9.attn.hook_z", 9) in switched and ("blocks.9.attn.hook_z", 6) in switched
    assert any(step.stage == "embedding-space" for s in found.values() for step in s.steps)


def test_a_good_scene_loads_with_its_file_name_as_id(tmp_path):
    scene = scenes.load(write(tmp_path, GOOD))
    assert scene.id == "a-scene"
    assert scene.steps[1].interventions[0].head == 9


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["steps"][1].update(layer=-1), "steps.1.layer"),
    (lambda d: d["steps"][0].update(text={"zh-CN": "你好"}), "steps.0.text"),
    (lambda d: d["steps"][1].update(text={"en": "The {answer}."}), "steps.1.text"),
    (lambda d: d["steps"][1].update(stage="nowhere"), "steps.1.stage"),
    (lambda d: d["steps"][1].update(temperature="hot"), "steps.1.temperature"),
    (lambda d: d["steps"][1]["interventions"][0].update(op="melt"), "steps.1.interventions.0.op"),
    (lambda d: d["steps"][0].update(colour="red"), "steps.0.colour"),
    (lambda d: d["known"].pop("source"), "known.source"),
    (lambda d: d.pop("untrained"), "untrained"),
    (lambda d: d["steps"][0].pop("prompt"), "steps.0.prompt"),
    # The induction test's numbers only exist in a step that runs it.
    (lambda d: d["steps"][1].update(text={"en": "The loss is {loss_second}."}), "steps.1"),
    (lambda d: d["steps"][1].update(probe="yes please"), "steps.1.probe"),
])
def test_a_malformed_scene_is_rejected_naming_the_file_and_the_field(tmp_path, change, field):
    data = json.loads(json.dumps(GOOD))
    change(data)
    with pytest.raises(scenes.SceneError) as error:
        scenes.load(write(tmp_path, data))
    message = str(error.value)
    assert message.startswith("a-scene.json: "), message
    assert f" {field}: " in f" {message.split(': ', 1)[1]}", message


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"title": ')
    with pytest.raises(scenes.SceneError, match=r"^broken\.json: not JSON"):
        scenes.load(path)


def test_the_api_lists_the_scenes_and_serves_one(client):
    listed = client.get("/api/scenes").json()
    assert [x["id"] for x in listed] == list(scenes.scenes())
    body = client.get(f"/api/scenes/{listed[0]['id']}").json()
    assert body["title"] == listed[0]["title"] and len(body["steps"]) >= 2
    missing = client.get("/api/scenes/no-such-scene")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_scene"
