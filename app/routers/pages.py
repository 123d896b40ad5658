"""The page, rendered by Jinja2 from the installed templates; static files (and plotly.js from
the installed package) are mounted in main."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from model import download_command

from ..model_info import model_info
from ..resources import data_dir

templates = Jinja2Templates(directory=data_dir("templates"))

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    explainer = getattr(request.app.state, "explainer", None)
    return templates.TemplateResponse(request, "index.html", {
        "model": model_info(explainer) if explainer else None,
        # Only GPT-2 small falls back to random weights, so that is what the page asks to download.
        "download_command": download_command(revision=request.app.state.settings.revision),
        "random_requested": request.app.state.settings.random_weights,
    })
