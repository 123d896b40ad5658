"""The page's architecture (the guide's "Where new things go"), checked without a browser:

- a view imports actions, the store and the shared helpers, never another view. The views are
  the modules of the stage registry (static/stages.json) plus the ones mounted beside them
  (room.js, scenes.js); the pages (main.js, compare.js) and views.js mount them;
- the stage registry is the one list of stages: the rendered pages show its stages in its
  order with its numbers, the room's state and the scenes take exactly its stage names, and no
  script or template lists the stages by hand.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.page.stages import parse, stages

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "static"
PAGES = {"main.js", "compare.js", "views.js"}  # they mount the views
MOUNTED_BESIDE = {"room.js", "scenes.js", "attention_lines.js", "selects.js"}  # views not in the registry

IMPORT = re.compile(r"""(?:^|\n)\s*(?:import|export)\s+(?:[\w*{}\s,$]+\s+from\s+)?["'](\.{1,2}/[^"']+)["']""")
DYNAMIC = re.compile(r"""\bimport\(\s*["'`]""")


def imports(path: Path) -> set[str]:
    """The modules beside `path` that it imports (static imports and re-exports), by file name."""
    return {(path.parent / spec).resolve().relative_to(path.parent.resolve()).as_posix()
            for spec in IMPORT.findall(path.read_text(encoding="utf-8"))}


def views_importing_views(folder: Path, view_names: set[str]) -> dict[str, list[str]]:
    """{module: the views it imports} for every module of `folder` but the pages."""
    wrong = {}
    for path in sorted(folder.glob("*.js")):
        imported = imports(path) & view_names
        if path.name not in PAGES and imported:
            wrong[path.name] = sorted(imported)
    return wrong


def views() -> set[str]:
    return {stage.view for stage in stages().all if stage.view} | MOUNTED_BESIDE


def test_the_import_parser_reads_every_form():
    """The walk below finds what it must: named, namespace, side-effect and re-exports."""
    text = ('import { a, b } from "./x.js";\nimport * as y from "./y.js";\nimport "./z.js";\n'
            'export { c } from "./w.js";\nimport {\n  d,\n  e,\n} from "./v.js";\nconst s = `import x from "./no.js"`;\n')
    assert set(IMPORT.findall(text)) == {"./x.js", "./y.js", "./z.js", "./w.js", "./v.js"}


def test_no_view_imports_a_view():
    every = {p.name for p in STATIC.glob("*.js")}
    assert views() <= every, f"the registry names modules that are not in static/: {views() - every}"
    for name in sorted(every):
        imported = imports(STATIC / name)
        assert imported <= every, f"{name} imports what is not in static/: {imported - every}"
    wrong = views_importing_views(STATIC, views())
    assert not wrong, f"a module imports a view (import actions.js and the store instead): {wrong}"


def test_only_views_js_imports_modules_by_name_at_run_time():
    """The views are imported by the registry's names in one place, views.js (loadViews)."""
    dynamic = sorted(p.name for p in STATIC.glob("*.js") if DYNAMIC.search(p.read_text(encoding="utf-8")))
    assert dynamic == ["views.js"]


def test_the_walk_can_fail(tmp_path):
    """A view importing a view is seen (as heads.js importing prompt.js was), a page's imports are not."""
    (tmp_path / "heads.js").write_text('import { explain } from "./prompt.js";\nimport { t } from "./i18n.js";\n')
    (tmp_path / "main.js").write_text('import * as room from "./room.js";\n')
    assert views_importing_views(tmp_path, {"heads.js", "prompt.js", "room.js"}) == {"heads.js": ["prompt.js"]}


def test_the_registry_is_well_formed():
    registry = stages()
    ids = [s.id for s in registry.all]
    assert len(ids) == len(set(ids))
    for stage in registry.all:
        assert re.fullmatch(r"[a-z][a-z-]*", stage.id)
        # Its own partial, or the plain section (templates/stages/_stage.html) its view fills.
        assert (ROOT / "templates" / stage.template).is_file() or stage.view, stage.template
        assert stage.view is None or (STATIC / stage.view).is_file(), stage.view
        assert stage.part in ("lesson", "lab", "aside")
    numbers = [s.number for s in registry.all if s.number is not None]
    assert numbers == list(range(1, len(numbers) + 1))
    # Malformed entries are refused, naming the entry.
    bad = json.loads((STATIC / "stages.json").read_text())
    bad["stages"][0]["part"] = "chapter"
    with pytest.raises(ValueError, match="prompt"):
        parse(bad)


def test_the_room_and_the_scenes_take_the_registry_stages():
    from app.schemas import STAGES, RoomState

    assert STAGES == stages().ids
    stage_schema = RoomState.model_json_schema()["properties"]["stage"]
    listed = {v for option in stage_schema.get("anyOf", [stage_schema]) for v in option.get("enum", [])}
    assert listed == stages().ids


class Sections(HTMLParser):
    """The stage sections of a page: (id, data-stage, the number in its heading or None), in order."""

    def __init__(self):
        super().__init__()
        self.found: list[list] = []
        self._in_number = False
        self._heading = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("data-stage"):
            self.found.append([a.get("id"), a["data-stage"], None])
        elif tag in ("h2",) and self.found and self.found[-1][2] is None:
            self._heading = True
        elif tag == "span" and self._heading and a.get("class") == "n":
            self._in_number = True

    def handle_endtag(self, tag):
        if tag == "h2":
            self._heading = False
        if tag == "span":
            self._in_number = False

    def handle_data(self, data):
        if self._in_number and data.strip():
            self.found[-1][2] = int(data)


@pytest.fixture(scope="module")
def pages(client):
    return {path: client.get(path).text for path in ("/", "/compare", "/?lang=zh-CN")}


@pytest.mark.parametrize("path", ["/", "/?lang=zh-CN"])
def test_the_page_shows_the_registry_stages_in_order_with_their_numbers(pages, path):
    parser = Sections()
    parser.feed(pages[path])
    expected = [[f"stage-{s.id}", s.id, s.number] for s in stages().all if s.view]
    assert parser.found == expected
    # The aside cards (no view, no section) are there too, in their place.
    html = pages[path]
    for stage in stages().all:
        if stage.view is None:
            assert 'class="stage explain-only"' in html


def test_compare_shows_the_registry_compare_stages_twice(pages):
    parser = Sections()
    parser.feed(pages["/compare"])
    expected = [[f"{key}-stage-{s.id}", s.id, s.number] for key in "ab" for s in stages().compare if s.view]
    assert parser.found == expected


def test_the_page_embeds_the_registry_for_its_scripts(pages):
    embedded = re.search(r'<script id="stages" type="application/json">(.*?)</script>', pages["/"], re.S)
    assert embedded and json.loads(embedded.group(1)) == json.loads((STATIC / "stages.json").read_text())


def test_no_template_or_script_lists_the_stages_by_hand():
    """Stage numbers and lists of stage names live in the registry only."""
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'<span class="n">\d', text), f"{path.name}: a stage number written by hand"
        assert not re.search(r'include "stages/', text), f"{path.name}: a stage included by hand (loop over `stages`)"
    ids = [s.id for s in stages().all]
    for path in STATIC.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        for literal in re.findall(r"\[[^\[\]]*\]", text):
            named = set(re.findall(r'"([a-z-]+)"', literal)) & set(ids)
            assert len(named) < 4, f"{path.name}: a list of stages by hand: {literal[:120]}"
