"""The pages, rendered by Jinja2 from the installed templates in the language asked for
(`?lang=`, else English); static files (and plotly.js from the installed package) are mounted in
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


def render(request: Request, name: str, **extra) -> HTMLResponse:
    explainer = getattr(request.app.state, "explainer", None)
    lang = catalog.choose(request.query_params.get("lang"))
    return templates.TemplateResponse(request, name, {
        "model": model_info(explainer) if explainer else None,
        # Only GPT-2 small falls back to random weights, so that is what the page asks to download.
        "download_command": download_command(revision=request.app.state.settings.revision),
        "random_requested": request.app.state.settings.random_weights,
        "lang": lang,
        "t": catalog.Translator(lang),
        "catalog": catalog.catalog(lang),
        **extra,
    })


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
