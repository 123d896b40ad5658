"""The pages, rendered by Jinja2 from the installed templates in one language: `?lang=` (which is
remembered in a cookie), else the cookie's, else the browser's `Accept-Language`, else English.
Static files (and plotly.js from the installed package) are mounted in
main.

- `/`: the explainer, every stage showing the run of the prompt typed.
- `/compare?a=...&b=...`: two prompts side by side, every stage mounted once per run.
- `/r/CODE`: the explainer following the teacher's room CODE (static/room.js).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from model import download_command

from .. import catalog
from ..model_info import model_info
from ..resources import data_dir

templates = Jinja2Templates(directory=data_dir("templates"))

router = APIRouter()


LANG_COOKIE = "lang"
LANG_COOKIE_AGE_S = 365 * 24 * 3600


def page_language(request: Request) -> tuple[str, bool]:
    """(the language to render, whether the URL chose it)."""
    asked = request.query_params.get("lang")
    if asked in catalog.languages():
        return asked, True
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in catalog.languages():
        return remembered, False
    return catalog.from_accept_language(request.headers.get("accept-language")), False


def render(request: Request, name: str, **extra) -> HTMLResponse:
    explainer = getattr(request.app.state, "explainer", None)
    lang, chosen = page_language(request)
    response = templates.TemplateResponse(request, name, {
        "model": model_info(explainer) if explainer else None,
        # Only GPT-2 small falls back to random weights, so that is what the page asks to download.
        "download_command": download_command(revision=request.app.state.settings.revision),
        "random_requested": request.app.state.settings.random_weights,
        "lang": lang,
        "languages": [(code, catalog.catalog(code)["page.language_name"]) for code in catalog.offered()],
        "t": catalog.Translator(lang),
        "catalog": catalog.catalog(lang),
        **extra,
    })
    response.headers["Vary"] = "Accept-Language, Cookie"  # the same URL is another page for another reader
    if chosen and request.cookies.get(LANG_COOKIE) != lang:
        # The pages link to each other (and a teacher shares /r/CODE) without ?lang=: the
        # choice lives on in the cookie.
        response.set_cookie(LANG_COOKIE, lang, max_age=LANG_COOKIE_AGE_S, samesite="lax")
    return response


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    return render(request, "index.html")


@router.get("/compare", response_class=HTMLResponse, include_in_schema=False)
def compare(request: Request) -> HTMLResponse:
    return render(request, "compare.html")


@router.get("/r/{code}", response_class=HTMLResponse, include_in_schema=False)
def follow_room(request: Request, code: str) -> HTMLResponse:
    """A student's page: the explainer, following the teacher's room `code` (static/room.js)."""
    return render(request, "index.html")
