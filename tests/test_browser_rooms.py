"""Follow the teacher (issue 13) in Chromium: a teacher's page opens a room and two students'
pages follow it live over server-sent events. Each change the teacher makes (layer, head,
pinned token, prompt, temperature, stage, scene step) reaches both students' stores, and the
time it takes is printed (run with -s); a student who explores on their own stops following and
catches up when following again; a student cannot publish; unknown and closed codes are said on
the page. Screenshots: test-artifacts/room-*.png."""

from __future__ import annotations

import contextlib
import json
import statistics

import httpx
import numpy as np
import pytest

from .browser import ARTIFACTS, chromium, require_chromium, settle  # noqa: F401 (chromium is a fixture)
from .test_browser import Page, tiny
from .test_browser_i18n import LEAKS
from .test_browser_layout import serious
from .waiting import wait_until

require_chromium()

IDLE_S = 6  # rooms close after 6 s without a publish; the teacher's page re-publishes every 2 s
N_LAYERS, N_HEADS = 3, 4

STATE = """() => { const s = explainer.store.state; const run = s.runs.get(s.shown.main);
  return {text: run ? run.text : null, layer: s.layer, head: s.head, pinned: s.pinned,
          temperature: s.temperature, scene: s.scene}; }"""

# Records Date.now() in a student's page when its store first satisfies `cond` (s: the state, run: the shown run).
WATCH = """(cond) => { window.__seenAt = null; if (window.__stopWatch) window.__stopWatch();
  const test = new Function('s', 'run', `return (${cond});`);
  const check = () => { const s = explainer.store.state; const run = s.runs.get(s.shown.main) || null;
    if (window.__seenAt == null && test(s, run)) window.__seenAt = Date.now(); };
  window.__stopWatch = explainer.store.subscribe('*', check); check(); }"""


@pytest.fixture(scope="module")
def server(checkpoints, live_servers):
    # Every page of these tests is on this one computer, and a test's rooms stay open until they idle
    # out: more than a classroom's per-computer cap (3) may be open at once here.
    return live_servers.url(tiny(checkpoints), env={"EXPLAINER_ROOM_IDLE": str(IDLE_S), "EXPLAINER_CLIENT_ROOMS": "32"})


def wait_closed(server: str, code: str) -> None:
    """Ask for the room until the server says it has closed (IDLE_S after its last publish; a read
    does not keep it open, and closes it once it has idled out)."""
    wait_until(lambda: httpx.get(f"{server}/api/rooms/{code}").status_code == 410, f"room {code} did not close",
               timeout_s=IDLE_S + 30, every_s=0.2)


def state(page: Page) -> dict:
    return page.page.evaluate(STATE)


def follow_latency(students: list[Page], cond: str, change, timeout_ms: int = 20_000) -> list[tuple[float, float]]:
    """Watch every student for `cond`, call change() (which returns the teacher's Date.now() at the
    change), and return each student's delays in ms: (its store satisfies cond, the last event
    it received before that arrived)."""
    for s in students:
        s.page.evaluate(WATCH, cond)
    t0 = change()
    out = []
    for s in students:
        s.page.wait_for_function("window.__seenAt != null", timeout=timeout_ms)
        seen, received = s.page.evaluate("[window.__seenAt, window.explainer.room.receivedAt]")
        out.append((seen - t0, min(received, seen) - t0))
    return out


def now(page: Page) -> int:
    return page.page.evaluate("Date.now()")



def shown_code(page) -> str:
    """The room's code once the teacher's panel shows it (the room is opened asynchronously)."""
    page.wait_for_function("() => (document.querySelector('[data-testid=room-code]')?.textContent || '').trim().length === 6")
    return page.get_by_test_id("room-code").inner_text().replace("\n", "").strip()

def test_two_students_follow_the_teacher_step_off_and_back(chromium, server):
    teacher = Page(chromium, server)
    students = [Page(chromium, server), Page(chromium, server)]
    latencies: dict[str, list[float]] = {}
    try:
        teacher.open("?present=1")
        teacher.page.get_by_test_id("room-open").click()
        panel = teacher.page.get_by_test_id("room-panel")
        panel.wait_for(state="visible")
        code = shown_code(teacher.page)
        assert len(code) == 6 and not set(code) & set("0O1IL")
        # The server listens on 127.0.0.1 only, which students' devices cannot reach: the panel says
        # so, with the command that serves a reachable classroom, and gives the link for this
        # computer, with no QR code a phone could not open.
        assert teacher.page.get_by_test_id("room-url").inner_text() == f"{server}/r/{code}"
        assert teacher.page.get_by_test_id("room-unreachable").is_visible()
        assert teacher.page.get_by_test_id("room-command").inner_text() == "explainer serve --classroom"
        assert teacher.page.get_by_test_id("room-qr").is_hidden()
        # The panel sits inside the projected screen, and the code is large.
        box = panel.bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 720
        assert teacher.page.evaluate("parseFloat(getComputedStyle(document.querySelector('.room-code')).fontSize)") >= 48
        teacher.page.wait_for_function("window.explainer.room.version >= 1")  # the first state is published
        ARTIFACTS.mkdir(exist_ok=True)
        teacher.page.screenshot(path=str(ARTIFACTS / "room-teacher-presenter-1280.png"))

        for s in students:
            s.open(f"r/{code}")
            s.page.get_by_test_id("room-bar").wait_for(state="visible")
        for s in students:
            s.page.wait_for_function("window.explainer.room.applied >= 1")
            s.page.wait_for_function(f"(() => {{ const s = explainer.store.state; const r = s.runs.get(s.shown.main); "
                                     f"return r && r.text === {json.dumps(state(teacher)['text'])}; }})()")
            assert s.page.get_by_test_id("room-status").inner_text() == f"Following the teacher (room {code})"
            assert s.page.get_by_test_id("room-open").count() == 0  # a student opens no room

        # Everyone is in: the teacher hides the panel down to its code, and goes on.
        teacher.page.get_by_test_id("room-hide").click()
        assert teacher.page.get_by_test_id("room-qr").is_hidden() and teacher.page.get_by_test_id("room-code").is_visible()
        settle(teacher.page)
        teacher.page.screenshot(path=str(ARTIFACTS / "room-teacher-hidden-1280.png"))
        teacher.page.evaluate("document.querySelector('[data-stage=overview]').scrollIntoView({block: 'start'})")

        # Layer, head, pinned token: each the teacher's keys and clicks.
        latencies["layer"] = follow_latency(students, "s.layer === 1", lambda: (now(teacher), teacher.page.keyboard.press("]"))[0])
        latencies["head"] = follow_latency(students, "s.head === 2", lambda: (now(teacher), teacher.page.keyboard.press("="), teacher.page.keyboard.press("="))[0])
        latencies["pinned"] = follow_latency(students, "s.pinned === 3", lambda: (now(teacher), teacher.chips().nth(3).click())[0])
        # The prompt: from the teacher's run shown (its own analysis is not the room's latency).
        text = "When Mary and John went to the store, John gave a drink to"
        teacher.page.evaluate("() => { window.__shownAt = null; explainer.store.subscribe(['shown'], (s) => {"
                              f" const r = s.runs.get(s.shown.main); if (r && r.text === {json.dumps(text)} && window.__shownAt == null) window.__shownAt = Date.now(); }}); }}")

        def new_prompt():
            teacher.analyze(text)
            return teacher.page.evaluate("window.__shownAt")

        latencies["prompt"] = follow_latency(students, f"run && run.text === {json.dumps(text)}", new_prompt)
        latencies["temperature"] = follow_latency(students, "s.temperature === 0.5",
                                                  lambda: (now(teacher), teacher.set_temperature(0.5))[0])
        for s in students:
            assert state(s) == state(teacher)

        # The stage the teacher scrolls to is scrolled into view on each student's page.
        teacher.page.evaluate("document.querySelector('[data-stage=mlp]').scrollIntoView({block: 'start'})")
        for s in students:
            s.page.wait_for_function("(() => { const top = document.querySelector('[data-stage=mlp]').getBoundingClientRect().top;"
                                     " return top >= 0 && top < innerHeight / 2; })()", timeout=10_000)
        teacher.page.evaluate("scrollTo(0, 0)")

        # One student explores on their own: the teacher's next head is not applied there.
        explorer, follower = students[1], students[0]
        explorer.page.get_by_test_id("room-follow-toggle").click()
        assert explorer.page.get_by_test_id("room-status").inner_text() == f"Exploring on your own (room {code})"
        assert explorer.page.get_by_test_id("room-follow-toggle").inner_text() == "Follow again"
        explorer.page.keyboard.press("-")  # their own head: 1, and a head of their own switched off
        explorer.page.evaluate("explainer.store.set({interventions: [{hook: 'blocks.0.attn.hook_z', op: 'zero', head: 0}]})")
        explorer.page.wait_for_function("(() => { const s = explainer.store.state; const r = s.runs.get(s.shown.main);"
                                        " return r && r.interventions.length === 1; })()", timeout=20_000)
        follow_latency([follower], "s.head === 3", lambda: (now(teacher), teacher.page.keyboard.press("="))[0])
        # The explorer has received that state too (and done whatever it would with it).
        explorer.page.wait_for_function(f"window.explainer.room.version >= {follower.page.evaluate('explainer.room.version')}")
        settle(explorer.page)
        assert state(explorer)["head"] == 1 and state(follower)["head"] == 3
        # Their own changes publish nothing: the teacher still shows head 3.
        assert state(teacher)["head"] == 3
        # Following again catches up at once.
        latencies["follow again"] = follow_latency([explorer], "s.head === 3 && run && !run.interventions.length", lambda: (
            now(explorer), explorer.page.get_by_test_id("room-follow-toggle").click())[0])
        assert state(explorer)["head"] == 3 and explorer.page.get_by_test_id("room-follow-toggle").inner_text() == "Explore on my own"
        assert explorer.page.evaluate("explainer.store.state.interventions") == []

        # A scene: opened, moved and closed by the teacher, on every student's page.
        teacher.page.get_by_test_id("scene-menu-button").click()
        teacher.page.locator("[data-testid=scene-menu] [data-scene='5-temperature']").click()
        for page in (teacher, *students):  # the scene's first step shown everywhere (its prompt analyzed)
            page.page.wait_for_selector("[data-testid=scene-step][data-scene='5-temperature'][data-ready='1']", timeout=20_000)
        latencies["scene step"] = follow_latency(students, "s.scene && s.scene.step === 1 && s.temperature === 0.3", lambda: (
            now(teacher), teacher.page.get_by_test_id("scene-next").click())[0])
        for s in students:
            s.page.wait_for_selector("[data-testid=scene-step][data-scene='5-temperature'][data-step='2']")
        settle(follower.page)
        follower.page.screenshot(path=str(ARTIFACTS / "room-student-scene-1280.png"))
        teacher.page.get_by_test_id("scene-close").click()
        for s in students:
            s.page.wait_for_selector("[data-testid=scene-step]", state="hidden")
        settle(follower.page)
        follower.page.screenshot(path=str(ARTIFACTS / "room-student-1280.png"))

        # A student's page cannot publish: it has no secret (and a guessed one is refused).
        for headers in ({}, {"X-Room-Secret": "guess"}):
            answer = follower.page.request.put(f"{server}/api/rooms/{code}/state", data={"text": "hijacked"}, headers=headers)
            assert answer.status == 403 and answer.json()["code"] == "not_teacher"
        assert httpx.get(f"{server}/api/rooms/{code}").json()["state"]["text"] == state(teacher)["text"] != "hijacked"

        # The panel shows the code again (and the command: no QR code here), and closes.
        teacher.page.get_by_test_id("room-hide").click()
        assert teacher.page.get_by_test_id("room-command").is_visible() and teacher.page.get_by_test_id("room-qr").is_hidden()
        teacher.page.get_by_test_id("room-close").click()
        assert panel.is_hidden() and teacher.page.get_by_test_id("room-open").is_visible()

        for page in (teacher, *students):
            assert not page.unexpected_errors(), page.errors
    finally:
        for page in (teacher, *students):
            page.close()
    print("\nfollow latency, teacher's change -> student's store updated (its event received), ms:")
    for what, values in latencies.items():
        print(f"  {what:>12}: {', '.join(f'{v:.0f} ({r:.0f})' if r >= 0 else f'{v:.0f}' for v, r in values)}")
    every = [v for values in latencies.values() for v, _ in values]
    print(f"  store updated: median {statistics.median(every):.0f} ms, max {max(every):.0f} ms over {len(every)} changes")


def test_a_reloaded_teacher_page_keeps_its_room(chromium, server):
    teacher = Page(chromium, server)
    try:
        teacher.open()
        teacher.page.get_by_test_id("room-open").click()
        code = shown_code(teacher.page)
        teacher.page.reload()
        teacher.page.wait_for_selector("body[data-loaded='1']")
        teacher.page.get_by_test_id("room-panel").wait_for(state="visible")
        assert shown_code(teacher.page) == code
        teacher.page.keyboard.press("]")
        teacher.page.wait_for_function("window.explainer.room.version >= 2", timeout=10_000)
        assert httpx.get(f"{server}/api/rooms/{code}").json()["state"]["layer"] == 1
        assert not teacher.unexpected_errors(), teacher.errors
    finally:
        teacher.close()


@pytest.mark.parametrize("case", ["unknown", "expired"])
def test_an_unknown_or_closed_code_is_said_on_the_page(chromium, server, case):
    if case == "unknown":
        code, words, status = "ZZZZZZ", "There is no room ZZZZZZ", 404
    else:
        code = httpx.post(f"{server}/api/rooms").json()["code"]
        wait_closed(server, code)  # never published to: it closes
        words, status = f"Room {code} has closed", 410
    student = Page(chromium, server)
    student.allowed.append(f"status of {status}")  # the browser's own line for the refused request
    try:
        student.open(f"r/{code.lower()}")
        error = student.page.get_by_test_id("room-error")
        error.wait_for(state="visible")
        assert words in error.inner_text()
        assert error.get_attribute("data-code") == ("unknown_room" if case == "unknown" else "room_expired")
        assert student.page.get_by_test_id("room-follow-toggle").is_hidden()
        student.page.screenshot(path=str(ARTIFACTS / f"room-student-{case}.png"))
        assert not student.unexpected_errors(), student.errors
    finally:
        student.close()


def test_a_room_closing_while_followed_is_said_on_the_page(chromium, server):
    room = httpx.post(f"{server}/api/rooms").json()
    httpx.put(f"{server}/api/rooms/{room['code']}/state", json={"text": "Hello there"},
              headers={"X-Room-Secret": room["secret"]})
    student = Page(chromium, server)
    try:
        student.open(f"r/{room['code']}")
        student.page.wait_for_function("window.explainer.room.applied === 1")
        wait_closed(server, room["code"])  # the read that finds it idle closes it (else the stream's next heartbeat)
        student.page.get_by_test_id("room-error").wait_for(state="visible", timeout=10_000)
        assert "has closed" in student.page.get_by_test_id("room-error").inner_text()
        assert not student.unexpected_errors(), student.errors
    finally:
        student.close()


def test_the_teacher_closing_the_room_is_said_on_the_students_page_at_once(chromium, server):
    teacher = Page(chromium, server)
    student = Page(chromium, server)
    try:
        teacher.open()
        teacher.page.get_by_test_id("room-open").click()
        code = shown_code(teacher.page)
        student.open(f"r/{code}")
        student.page.wait_for_function("window.explainer.room.applied >= 1")
        teacher.page.get_by_test_id("room-close").click()
        student.page.get_by_test_id("room-error").wait_for(state="visible", timeout=5_000)
        assert "has closed" in student.page.get_by_test_id("room-error").inner_text()
        assert httpx.get(f"{server}/api/rooms/{code}").status_code == 410
        assert teacher.page.get_by_test_id("room-open").is_visible()
        assert not teacher.unexpected_errors(), teacher.errors
        assert not student.unexpected_errors(), student.errors
    finally:
        teacher.close()
        student.close()


def test_the_room_panel_and_bar_pass_axe_and_speak_the_pseudo_language(chromium, server):
    teacher = Page(chromium, server)
    student = Page(chromium, server)
    try:
        teacher.open("?lang=en-XA")
        teacher.page.get_by_test_id("room-open").click()
        teacher.page.wait_for_function("window.explainer.room.version >= 1")
        code = teacher.page.evaluate("window.explainer.room.code")
        student.open(f"r/{code}?lang=en-XA")
        student.page.wait_for_function("window.explainer.room.applied >= 1")
        for page in (teacher, student):
            leaks = [leak for leak in page.page.evaluate(LEAKS)]
            assert not leaks, leaks
        student.page.get_by_test_id("room-follow-toggle").click()
        assert not student.page.evaluate(LEAKS)
        for page in (teacher, student):
            page.page.goto(page.page.url.replace("lang=en-XA", "lang=en"))
            page.page.wait_for_selector("body[data-loaded='1']")
        teacher.page.get_by_test_id("room-panel").wait_for(state="visible")
        student.page.get_by_test_id("room-bar").wait_for(state="visible")
        settle(student.page)
        assert serious(teacher.page) == []
        assert serious(student.page) == []
        # On a phone the panel and the bar stay on screen.
        for page, part in ((teacher, "room-panel"), (student, "room-bar")):
            page.page.set_viewport_size({"width": 390, "height": 844})
            box = page.page.get_by_test_id(part).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
        for page in (teacher, student):
            assert not page.unexpected_errors(), page.errors
    finally:
        teacher.close()
        student.close()


def test_a_student_follows_a_prompt_of_ids_as_those_ids(chromium, server):
    """After the teacher adds the real <|endoftext|> (a run asked for by ids), a student shows
    exactly the teacher's ids: the text tokenized again would give other tokens."""
    teacher, student = Page(chromium, server), Page(chromium, server)
    try:
        code = open_room_and_follow(teacher, student)
        end_of_text = httpx.get(f"{server}/api/model").json()["end_of_text_id"]
        assert end_of_text == 50256
        teacher.page.get_by_test_id("end-of-text").click()
        ids_of = "(() => { const s = explainer.store.state; const r = s.runs.get(s.shown.main); return r ? r.ids : null; })()"
        teacher.page.wait_for_function(f"(() => {{ const ids = {ids_of}; return ids && ids[ids.length - 1] === {end_of_text}; }})()")
        want = teacher.page.evaluate(ids_of)
        published = httpx.get(f"{server}/api/rooms/{code}").json()["state"]
        assert published["ids"] == want
        # Typed, the same text is other tokens: the student must not tokenize it again.
        typed = [t["id"] for t in httpx.post(f"{server}/api/analyze", json={"text": published["text"], "patterns": "auto"}).json()["tokens"]]
        assert typed != want
        student.page.wait_for_function(f"JSON.stringify({ids_of}) === {json.dumps(json.dumps(want, separators=(',', ':')))}", timeout=20_000)
        assert not teacher.unexpected_errors(), teacher.errors
        assert not student.unexpected_errors(), student.errors
    finally:
        teacher.close()
        student.close()


@contextlib.contextmanager
def pages(chromium, server: str, n: int):
    """n fresh pages of the server, whose consoles must stay clean; closed at the end."""
    opened = [Page(chromium, server) for _ in range(n)]
    try:
        yield opened
        for page in opened:
            assert not page.unexpected_errors(), page.errors
    finally:
        for page in opened:
            page.close()


def open_room_and_follow(teacher: Page, student: Page) -> str:
    """The teacher's page opens a room; the student's follows it and shows the teacher's prompt."""
    teacher.open()
    teacher.page.get_by_test_id("room-open").click()
    code = shown_code(teacher.page)
    teacher.page.wait_for_function("window.explainer.room.version >= 1")
    student.open(f"r/{code}")
    student.page.wait_for_function("window.explainer.room.applied >= 1")
    wait_same_view(student, teacher)
    return code


def wait_same_view(student: Page, teacher: Page) -> None:
    """Until the student's page shows what the teacher's does now (prompt, layer, head, pin,
    temperature, scene, and the run with what is switched off): the teacher's page must have
    settled (its own analysis shown)."""
    want = json.dumps(json.dumps(view(teacher), separators=(",", ":"), ensure_ascii=False))
    student.page.wait_for_function(f"JSON.stringify(({VIEW})()) === {want}", timeout=20_000)


# What a page shows: its state, and the shown run's interventions (null fields left out).
VIEW = """() => { const s = explainer.store.state; const run = s.runs.get(s.shown.main);
  const strip = (list) => list.map((x) => Object.fromEntries(Object.entries(x).filter(([, v]) => v != null)));
  return {text: run ? run.text : null, layer: s.layer, head: s.head, pinned: s.pinned, temperature: s.temperature,
          scene: s.scene, interventions: strip(s.interventions), run: run ? strip(run.interventions) : null}; }"""


def view(page: Page) -> dict:
    return page.page.evaluate(VIEW)


def test_a_students_first_own_change_switches_the_bar_to_exploring_at_once(chromium, server):
    """Each kind of change a student can make flips "Following the teacher" to "Exploring on your
    own" by itself, the teacher changing nothing (the room's version stays); "Follow again" brings
    the teacher's view back, and the next change flips it again. Changes the room makes itself
    (its prompt, its pin, its scroll) never do."""
    with pages(chromium, server, 2) as (teacher, student):
        code = open_room_and_follow(teacher, student)
        version = httpx.get(f"{server}/api/rooms/{code}").json()["version"]
        status = student.page.get_by_test_id("room-status")
        toggle = student.page.get_by_test_id("room-follow-toggle")
        sp = student.page

        def slider_right():
            sp.get_by_test_id("temperature-slider").focus()
            sp.keyboard.press("ArrowRight")

        def switch_attention_off():
            sp.get_by_test_id("ablate-attn-layer").click()

        def wheel_to_another_stage():
            sp.evaluate("scrollTo(0, 0)")  # as the room left it: a scroll that is not the student's changes nothing
            assert sp.evaluate("window.explainer.room.following")
            sp.mouse.move(4, 300)  # beside the cards: over the token row the wheel would scroll the row
            sp.mouse.wheel(0, 2500)

        changes = [
            ("layer", lambda: sp.keyboard.press("]")),
            # By the keyboard, as a person does (select_option's events are the script's, not a person's).
            ("head", lambda: (sp.get_by_test_id("head-select").focus(), sp.keyboard.press("ArrowDown"))),
            ("pinned", lambda: student.chips().nth(1).click()),
            ("temperature", slider_right),
            ("analysis", lambda: (sp.get_by_test_id("prompt-input").fill("A prompt of my own"),
                                  sp.get_by_test_id("analyze-button").click())),
            ("interventions", switch_attention_off),
            ("scroll", wheel_to_another_stage),
            ("generation", lambda: sp.get_by_test_id("generate-button").click()),
            ("scene", lambda: (sp.get_by_test_id("scene-menu-button").click(),
                               sp.locator("[data-testid=scene-menu] [data-scene='5-temperature']").click())),
        ]
        for why, change in changes:
            assert status.inner_text() == f"Following the teacher (room {code})", why
            assert toggle.inner_text() == "Explore on my own"
            change()
            sp.wait_for_function("!window.explainer.room.following", timeout=10_000)
            assert sp.evaluate("window.explainer.room.explored") == why
            assert status.inner_text() == f"Exploring on your own (room {code})"
            assert toggle.inner_text() == "Follow again" and toggle.get_attribute("aria-pressed") == "false"
            if why == "layer":
                student.page.screenshot(path=str(ARTIFACTS / "room-student-exploring-1280.png"))
            # The teacher did nothing: the room's state is the one the student was following.
            assert httpx.get(f"{server}/api/rooms/{code}").json()["version"] == version
            if why == "scene":
                sp.wait_for_selector("[data-testid=scene-step][data-ready]", timeout=20_000)
            elif why == "generation":  # its run shown (the prompt and what was generated)
                sp.wait_for_function("(() => { const s = explainer.store.state; const g = s.generation.main;"
                                     " return (!g || g.status !== 'running') && s.busy === null"
                                     " && s.analysis.main.status !== 'running'; })()", timeout=30_000)
            toggle.click()
            assert status.inner_text() == f"Following the teacher (room {code})"
            wait_same_view(student, teacher)
            sp.wait_for_function("explainer.store.state.busy === null", timeout=20_000)
            assert sp.evaluate("window.explainer.room.following"), f"following again after {why} did not last"


def test_a_head_the_teacher_switches_off_is_switched_off_for_the_students(chromium, server):
    """Switched-off heads are part of the room's state: the teacher's page publishes them, a
    following student's page analyzes the teacher's prompt with them, and shows the same run and
    the same numbers as the API gives for that prompt with that head off (and the teacher's bars)."""
    from app.runs.tensors import decode

    from .test_browser import softmax

    layer, head = 1, 2
    ablation = {"hook": f"blocks.{layer}.attn.hook_z", "op": "zero", "head": head}
    with pages(chromium, server, 2) as (teacher, student):
        code = open_room_and_follow(teacher, student)
        text = view(teacher)["text"]
        teacher.page.get_by_test_id("ablate-toggle").click()
        before = teacher.runs()
        teacher.page.locator(f"[data-testid=overview-head][data-layer='{layer}'][data-head='{head}']").dispatch_event("click")
        teacher.wait_run(before)
        published = httpx.get(f"{server}/api/rooms/{code}").json()["state"]
        assert [{k: v for k, v in x.items() if v is not None} for x in published["interventions"]] == [ablation]

        wait_same_view(student, teacher)
        assert view(student)["run"] == [ablation] and view(student)["interventions"] == [ablation]
        student.page.wait_for_selector("[data-testid=ghost-bar]")  # the clean run beside it, as on the teacher's
        item = student.page.get_by_test_id("intervention")
        assert item.count() == 1 and item.get_attribute("data-hook") == ablation["hook"] and item.get_attribute("data-head") == str(head)
        # The numbers: the API's, for this prompt with this head off.
        body = httpx.post(f"{server}/api/analyze", json={"text": text, "interventions": [ablation]}, timeout=60).json()
        clean = httpx.post(f"{server}/api/analyze", json={"text": text}, timeout=60).json()
        probs = softmax(decode(body["tensors"]["logits"]), 1.0)
        bars = student.bars()
        ids = [i for i, _ in bars]
        assert ids == [t["id"] for t in body["top"]]
        # The head matters here (the clean run's numbers differ), so the comparison can tell them apart.
        assert np.abs(probs[ids] / softmax(decode(clean["tensors"]["logits"]), 1.0)[ids] - 1).max() > 1e-3
        np.testing.assert_allclose([p for _, p in bars], probs[ids], rtol=1e-4, atol=1e-9)
        assert bars == teacher.bars()
        student.page.screenshot(path=str(ARTIFACTS / "room-student-ablated-1280.png"))
        assert student.page.evaluate("window.explainer.room.following")  # the room's own change: still following

        # Switched back on by the teacher: back on for the students.
        before = teacher.runs()
        teacher.page.get_by_test_id("clear-interventions").click()
        teacher.wait_run(before)  # the teacher's own page shows its clean run first
        wait_same_view(student, teacher)
        assert view(student)["run"] == [] and student.page.get_by_test_id("ghost-bar").count() == 0
        assert student.page.evaluate("window.explainer.room.following")
