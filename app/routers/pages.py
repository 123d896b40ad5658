"""The pages, rendered by Jinja2 from the installed templates in one language: `?lang=`, else the
one last chosen with the page's switch (the `lang` cookie, which static/language.js sets), else
the browser's `Accept-Language`, else English.
Static files (and plotly.js from the installed package) are mounted in
main.

- `/`: the explainer, every stage showing the run of the prompt typed. `/?token=T`, the teacher
  URL the terminal prints (app/rooms/classroom.py), keeps the teacher token in a cookie and sends the
  browser on to the same page without it, so the token stays out of the address bar and history.
- `/compare?a=...&b=...`: two prompts side by side, every stage mounted once per run.
- `/r/CODE`: the explainer following the teacher's room CODE (static/room.js).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.page import catalog
from app.rooms.classroom import COOKIE_MAX_AGE_S, TEACHER_COOKIE, TOKEN_PARAM
from app.runs.model_info import download_hint, model_info
from app.page.resources import data_dir
from app.page.stages import stages

templates = Jinja2Templates(directory=data_dir("templates"))

router = APIRouter()


LANG_COOKIE = "lang"  # set by the page's language switch (static/language.js), not by a link


def page_language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in catalog.languages():  # the pseudo-language too: a link can ask for it
        return asked
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in catalog.offered():
        return chosen
    return catalog.from_accept_language(request.headers.get("accept-language"))


def render(request: Request, name: str, **extra) -> HTMLResponse:
    explainer = getattr(request.app.state, "explainer", None)
    lang = page_language(request)
    response = templates.TemplateResponse(request, name, {
        "model": model_info(explainer) if explainer else None,
        # Only GPT-2 small falls back to random weights, so that is what the page asks to download.
        "download_command": download_hint(request.app.state.settings.revision),
        "random_requested": request.app.state.settings.random_weights,
        "lang": lang,
        "languages": [(code, catalog.catalog(code)["page.language_name"]) for code in catalog.offered()],
        "t": catalog.Translator(lang),
        "catalog": catalog.catalog(lang),
        "stages": stages(),  # static/stages.json: the stages in order, their numbers and titles
        **extra,
    })
    response.headers["Vary"] = "Accept-Language, Cookie"  # the same URL is another page for another reader
    return response


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    token = request.query_params.get(TOKEN_PARAM)
    if token is not None and request.app.state.teacher.matches(token):
        rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_PARAM])
        response = RedirectResponse("/" + (f"?{rest}" if rest else ""), status_code=303)
        response.set_cookie(TEACHER_COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        response.headers["Cache-Control"] = "no-store"
        return response
    return render(request, "index.html")


@router.get("/compare", response_class=HTMLResponse, include_in_schema=False)
def compare(request: Request) -> HTMLResponse:
    return render(request, "compare.html")


@router.get("/r/{code}", response_class=HTMLResponse, include_in_schema=False)
def follow_room(request: Request, code: str) -> HTMLResponse:
    """A student's page: the explainer, following the teacher's room `code` (static/room.js)."""
    return render(request, "index.html")
