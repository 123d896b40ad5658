"""The room panel on a classroom network (issue 23), in Chromium, against real servers:

- on a server with EXPLAINER_PUBLIC_URL, the panel gives the students' URL on that address, and
  its QR code is that URL (the SVG the page shows, decoded: its title, and its modules are those
  of the URL's own QR code), never 127.0.0.1;
- on a loopback-only server, a room still opens (to try it on this computer), and the panel says
  in large text that students' laptops cannot open it, with the command that makes it reachable
  (GET /api/classroom's, to copy) instead of a QR code;
- on a server that wants the teacher token, a page without it offers no "Open a room" and says
  only the teacher opens one; the teacher URL (/?token=...) makes the page the teacher's; a
  refusal (403 teacher_only, 429 client_limit, 403 cross_site) shows the server's own sentence.

Each panel at 390 px, 1280 px and 1920 px in presenter mode, in English and Chinese: on screen,
nothing spilling out of it, axe clean, the console clean. Screenshots: test-artifacts/classroom-*.png.
"""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import httpx
import pytest
import segno

from .browser import ARTIFACTS, chromium, require_chromium  # noqa: F401 (chromium is a fixture)
from .live_server import free_port, serve_command, serving
from .test_browser import Page, tiny
from .test_browser_layout import serious

require_chromium()

PUBLIC = "http://class.example:9000"
TOKEN = "teacher-token-of-this-test-0123"
COMMAND = "explainer serve --classroom"

LAYOUTS = [(390, 844, False, "en"), (800, 900, False, "en"), (1280, 720, False, "en"), (1024, 768, True, "en"),
           (1920, 1080, True, "en"),
           (390, 844, False, "zh-CN"), (1280, 720, False, "zh-CN"), (1920, 1080, True, "zh-CN")]
LAYOUT_IDS = [f"{w}{'-presenter' if p else ''}-{lang}" for w, _, p, lang in LAYOUTS]

# Every visible element of `selector` that pokes out of it, and the element itself if it pokes out of the window.
SPILLS = """(selector) => {
  const box = document.querySelector(selector);
  const b = box.getBoundingClientRect();
  const out = [];
  if (b.left < -1 || b.top < -1 || b.right > innerWidth + 1 || b.bottom > innerHeight + 1)
    out.push(`${selector} [${b.left}..${b.right} x ${b.top}..${b.bottom}] outside the window ${innerWidth} x ${innerHeight}`);
  for (const e of box.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (!r.width && !r.height) continue;
    if (r.left >= b.left - 1 && r.right <= b.right + 1 && r.top >= b.top - 1 && r.bottom <= b.bottom + 1) continue;
    out.push(`${e.tagName.toLowerCase()}.${e.className} [${r.left}..${r.right} x ${r.top}..${r.bottom}]`);
  }
  if (document.documentElement.scrollWidth > innerWidth + 1) out.push(`the page is ${document.documentElement.scrollWidth} px wide`);
  return out;
}"""


@pytest.fixture(scope="module")
def checkpoint(checkpoints):
    return tiny(checkpoints)


@pytest.fixture(scope="module")
def public_server(checkpoint, live_servers):
    return live_servers.url(checkpoint, env={"EXPLAINER_PUBLIC_URL": PUBLIC})


@pytest.fixture(scope="module")
def loopback_server(checkpoint, live_servers):
    """No public URL and no teacher token: the default settings (the run's shared server)."""
    return live_servers.url(checkpoint, env={"EXPLAINER_PUBLIC_URL": None, "EXPLAINER_TEACHER_TOKEN": None})


@pytest.fixture(scope="module")
def token_server(checkpoint, live_servers):
    """Even on loopback, teacher actions need the token here; one room per computer."""
    return live_servers.url(checkpoint, env={"EXPLAINER_TEACHER_TOKEN": TOKEN, "EXPLAINER_CLIENT_ROOMS": "1",
                                             "EXPLAINER_PUBLIC_URL": None})


@contextlib.contextmanager
def opened(chromium, server: str, width: int = 1280, height: int = 720, presenter: bool = False, lang: str = "en",
           before=None, path: str = ""):
    """A page of the server (at `path`: "r/CODE" follows a room) at this size, in this language
    (presenter mode or not), its first run shown; its console must stay clean to the end, but for
    what `before(page)` allows (it runs before the page is opened)."""
    page = Page(chromium, server)
    try:
        page.page.set_viewport_size({"width": width, "height": height})
        if before:
            before(page)
        page.open(f"{path}?lang={lang}" + ("&present=1" if presenter else ""))
        yield page
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()


def open_room(page: Page) -> str:
    page.page.get_by_test_id("room-open").click()
    page.page.get_by_test_id("room-panel").wait_for(state="visible")
    page.page.wait_for_function("(document.querySelector('[data-testid=room-code]')?.textContent || '').length === 6")
    page.page.wait_for_function("window.explainer.room.version >= 1")  # published: the room is in use
    return page.page.evaluate("window.explainer.room.code")


def close_room(page: Page) -> None:
    """Closed through the page (each computer may hold only a few rooms)."""
    page.page.get_by_test_id("room-close").click()
    page.page.get_by_test_id("room-panel").wait_for(state="hidden")


def check_layout(page: Page, name: str, selector: str = "[data-testid=room-panel]") -> None:
    """Nothing spills, a screenshot, and axe (once per language: at 1280 px)."""
    assert page.page.evaluate(SPILLS, selector) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if page.page.viewport_size["width"] == 1280:
        assert serious(page.page) == []


@pytest.mark.parametrize("width, height, presenter, lang", LAYOUTS, ids=LAYOUT_IDS)
def test_the_panel_shows_the_public_url_and_its_qr_code(chromium, public_server, width, height, presenter, lang):
    with opened(chromium, public_server, width, height, presenter, lang) as page:
        assert page.page.evaluate("fetch('/api/classroom').then((r) => r.json())") == {
            "teacher": True, "token_required": False, "reachable": True, "students_base": PUBLIC, "command": COMMAND}
        code = open_room(page)
        want = f"{PUBLIC}/r/{code}"
        link = page.page.get_by_test_id("room-url")
        assert link.inner_text() == want and link.get_attribute("href") == want
        panel = page.page.get_by_test_id("room-panel")
        assert "127.0.0.1" not in panel.inner_text() and "localhost" not in panel.inner_text()
        assert page.page.get_by_test_id("room-unreachable").is_hidden()  # students can reach it: no warning

        # The QR code shown is the students' URL: the SVG the page loaded, decoded.
        qr = page.page.get_by_test_id("room-qr")
        assert qr.is_visible()
        page.page.wait_for_function("document.querySelector('[data-testid=room-qr]').naturalWidth > 0")
        src = page.page.evaluate("document.querySelector('[data-testid=room-qr]').src")
        svg = ET.fromstring(page.page.request.get(src).body())
        ns = {"s": "http://www.w3.org/2000/svg"}
        assert svg.find("s:title", ns).text == want
        symbol = segno.make(want, error="m")
        out = io.BytesIO()
        symbol.save(out, kind="svg", xmldecl=False, omitsize=True, border=2)
        assert svg.findall("s:path", ns)[-1].get("d") == ET.fromstring(out.getvalue()).find("s:path", ns).get("d")
        # Readable from the back of the room: the code large, the QR code large.
        root = page.page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert page.page.evaluate("parseFloat(getComputedStyle(document.querySelector('.room-code')).fontSize)") >= 2.5 * root
        assert qr.bounding_box()["width"] >= 140

        check_layout(page, f"classroom-public-{width}{'-presenter' if presenter else ''}-{lang}")
        close_room(page)


@pytest.mark.parametrize("width, height, presenter, lang", LAYOUTS, ids=LAYOUT_IDS)
def test_on_a_loopback_only_server_the_panel_gives_the_command(chromium, loopback_server, width, height, presenter, lang):
    def allow_copy(page):
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=loopback_server)

    with opened(chromium, loopback_server, width, height, presenter, lang, before=allow_copy) as page:
        classroom = httpx.get(f"{loopback_server}/api/classroom").json()
        assert classroom == {"teacher": True, "token_required": False, "reachable": False, "students_base": None,
                             "command": COMMAND}
        code = open_room(page)
        # It works here, for trying it on this computer.
        assert page.page.get_by_test_id("room-url").inner_text() == f"{loopback_server}/r/{code}"
        assert httpx.get(f"{loopback_server}/api/rooms/{code}").json()["version"] >= 1
        # And says plainly that students cannot open it, and which command makes it reachable.
        warning = page.page.get_by_test_id("room-unreachable")
        assert warning.is_visible()
        lead = warning.locator(".room-unreachable-lead")
        words = {"en": "Students' laptops cannot open this room", "zh-CN": "学生的电脑打不开这个课堂"}[lang]
        assert words in lead.inner_text()
        root = page.page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert page.page.evaluate("parseFloat(getComputedStyle(document.querySelector('.room-unreachable-lead')).fontSize)") >= 1.2 * root
        command = page.page.get_by_test_id("room-command")
        assert command.inner_text() == classroom["command"]
        assert page.page.evaluate("getComputedStyle(document.querySelector('[data-testid=room-command]')).userSelect") == "all"
        assert page.page.get_by_test_id("room-qr").is_hidden()  # no QR code a phone could not open
        check_layout(page, f"classroom-loopback-{width}{'-presenter' if presenter else ''}-{lang}")
        copy = page.page.get_by_test_id("room-copy")
        label = copy.inner_text()
        copy.click()
        page.page.wait_for_function(f"document.querySelector('[data-testid=room-copy]').textContent !== {label!r}")
        assert page.page.evaluate("navigator.clipboard.readText()") == COMMAND
        close_room(page)


@pytest.mark.parametrize("width, height, presenter, lang", LAYOUTS, ids=LAYOUT_IDS)
def test_a_page_without_the_teacher_token_offers_no_room(chromium, token_server, width, height, presenter, lang):
    with opened(chromium, token_server, width, height, presenter, lang) as page:
        note = page.page.get_by_test_id("room-teacher-only")
        note.wait_for(state="visible")
        assert page.page.get_by_test_id("room-open").is_hidden()
        assert page.page.evaluate("window.explainer.room.classroom.teacher") is False
        words = {"en": "Only the teacher can open a room", "zh-CN": "只有老师才能开设课堂"}[lang]
        assert words in note.inner_text()
        check_layout(page, f"classroom-student-{width}{'-presenter' if presenter else ''}-{lang}", "header.top")


def test_the_teacher_url_makes_the_page_the_teachers_and_refusals_are_said(chromium, token_server):
    with opened(chromium, token_server) as page:
        assert page.page.get_by_test_id("room-open").is_hidden()
        refused = page.page.request.post(f"{token_server}/api/rooms")
        assert refused.status == 403 and refused.json()["code"] == "teacher_only"

        # The teacher URL the terminal prints: the token goes into a cookie, and out of the address bar.
        page.page.goto(f"{token_server}/?token={TOKEN}")
        page.page.wait_for_selector("body[data-loaded='1']")
        assert urlsplit(page.page.url).path == "/" and "token=" not in page.page.url and TOKEN not in page.page.url
        page.page.get_by_test_id("room-open").wait_for(state="visible")
        assert page.page.get_by_test_id("room-teacher-only").is_hidden()
        code = open_room(page)
        assert httpx.get(f"{token_server}/api/rooms/{code}").json()["version"] >= 1
        close_room(page)

        # One room per computer here: this computer's room, opened elsewhere, leaves none for the page.
        other = httpx.post(f"{token_server}/api/rooms", headers={"Authorization": f"Bearer {TOKEN}"})
        assert other.status_code == 201
        expected = httpx.post(f"{token_server}/api/rooms", headers={"Authorization": f"Bearer {TOKEN}"})
        assert expected.status_code == 429 and expected.json()["code"] == "client_limit"
        page.allowed.append("status of 429")
        said = said_on_refusal(page)
        assert sentence(expected.json()) in said
        httpx.request("DELETE", f"{token_server}/api/rooms/{other.json()['code']}",
                      headers={"Authorization": f"Bearer {TOKEN}", "X-Room-Secret": other.json()["secret"]})

        # Sent as if by another web site (an Origin that is not this server's): 403 cross_site, said.
        page.allowed.append("status of 403")
        page.page.route("**/api/rooms", lambda route: route.fulfill(response=route.fetch(
            headers={**route.request.headers, "origin": "http://elsewhere.example", "sec-fetch-site": "cross-site"})))
        said = said_on_refusal(page)
        page.page.unroute("**/api/rooms")
        cross = httpx.post(f"{token_server}/api/rooms", headers={"Origin": "http://elsewhere.example"})
        assert cross.status_code == 403 and cross.json()["code"] == "cross_site"
        assert sentence(cross.json()) in said

        # The teacher cookie gone (another browser, a new start): closing the room is refused, and
        # said; opening one is 403 teacher_only, said, and then the page says only the teacher opens
        # rooms, in place of the button.
        code = open_room(page)
        page.context.clear_cookies()
        page.page.get_by_test_id("room-close").click()
        error = page.page.get_by_test_id("room-open-error")
        error.wait_for(state="visible")
        expected = httpx.delete(f"{token_server}/api/rooms/{code}")
        assert expected.status_code == 403 and expected.json()["code"] == "teacher_only"
        assert sentence(expected.json()) in error.inner_text()
        assert httpx.get(f"{token_server}/api/rooms/{code}").status_code == 200  # still open: it was refused
        expected = httpx.post(f"{token_server}/api/rooms")
        assert expected.status_code == 403
        said = said_on_refusal(page)
        assert expected.json()["code"] == "teacher_only" and sentence(expected.json()) in said
        page.page.get_by_test_id("room-teacher-only").wait_for(state="visible")
        assert page.page.get_by_test_id("room-open").is_hidden()
        page.page.screenshot(path=str(ARTIFACTS / "classroom-refused-1280.png"))


def said_on_refusal(page: Page) -> str:
    """Press "Open a room" and return what the page says beside it (no room opens)."""
    page.page.get_by_test_id("room-open").click()
    error = page.page.get_by_test_id("room-open-error")
    error.wait_for(state="visible")
    assert page.page.get_by_test_id("room-panel").is_hidden()
    return error.inner_text()


def sentence(body: dict) -> str:
    """What the page says of an error body (api.js): its errors' messages, else its detail."""
    return "; ".join(e["message"] for e in body["errors"]) if body.get("errors") else body["detail"]


def test_a_tab_past_this_computers_follow_streams_says_so(chromium, checkpoint, live_servers):
    """One follow stream per computer here: a second tab is refused (429 client_limit), and says
    the server's sentence, instead of connecting again and again."""
    url = live_servers.url(checkpoint, env={"EXPLAINER_CLIENT_FOLLOWERS": "1", "EXPLAINER_PUBLIC_URL": None,
                                            "EXPLAINER_TEACHER_TOKEN": None})
    room = httpx.post(f"{url}/api/rooms").json()
    httpx.put(f"{url}/api/rooms/{room['code']}/state", json={"text": "Hello there"},
              headers={"X-Room-Secret": room["secret"]}).raise_for_status()
    asked: list[str] = []

    def count_streams(page):
        page.allowed.append("status of 429")
        page.page.on("request", lambda r: r.url.endswith("/events") and asked.append(r.url))

    with opened(chromium, url, path=f"r/{room['code']}") as first:
        first.page.wait_for_function("window.explainer.room.applied === 1")
        expected = httpx.get(f"{url}/api/rooms/{room['code']}/events")
        assert expected.status_code == 429 and expected.json()["code"] == "client_limit"
        with opened(chromium, url, path=f"r/{room['code']}", before=count_streams) as second:
            error = second.page.get_by_test_id("room-error")
            error.wait_for(state="visible")
            assert error.get_attribute("data-code") == "client_limit"
            assert sentence(expected.json()) in error.inner_text()
            assert second.page.get_by_test_id("room-follow-toggle").is_hidden()
            assert 1 <= len(asked) <= 2  # the EventSource's, and the check that asked why
        assert first.page.evaluate("window.explainer.room.following")


def test_a_server_that_stops_is_waited_for_then_its_lost_room_said(chromium, checkpoint):
    """The server stopping ends the stream with `stopping`: the page says it is reconnecting (no
    error), and once a server is back on the same address, that the room is gone with it."""
    port = free_port()
    command = serve_command(checkpoint)
    with contextlib.ExitStack() as first:
        url = first.enter_context(serving(command, env={"EXPLAINER_PUBLIC_URL": None}, port=port)).url
        room = httpx.post(f"{url}/api/rooms").json()
        httpx.put(f"{url}/api/rooms/{room['code']}/state", json={"text": "Hello there"},
                  headers={"X-Room-Secret": room["secret"]}).raise_for_status()

        def allow_the_gap(page):
            # While it stops, the server answers what the page asks with 503 stopping (its reconnect
            # may land then); then nothing answers; then the new server knows no such room.
            page.allowed += ["ERR_CONNECTION_REFUSED", "status of 404", "status of 503"]

        with opened(chromium, url, path=f"r/{room['code']}", before=allow_the_gap) as student:
            student.page.wait_for_function("window.explainer.room.applied === 1")
            first.close()  # the server stops
            status = student.page.get_by_test_id("room-status")
            student.page.wait_for_function("document.querySelector('[data-testid=room-status]').textContent"
                                           ".includes('reconnecting')")
            assert student.page.get_by_test_id("room-error").is_hidden()
            assert student.page.evaluate("window.explainer.room.ended") is None
            assert status.inner_text().startswith(f"Following the teacher (room {room['code']})")
            with serving(command, env={"EXPLAINER_PUBLIC_URL": None}, port=port):
                error = student.page.get_by_test_id("room-error")
                error.wait_for(state="visible", timeout=20_000)
                assert error.get_attribute("data-code") == "unknown_room"
                assert f"There is no room {room['code']}" in error.inner_text()
