"""The page, rendered by Jinja2; static files (and plotly.js from the installed package) are
mounted in main."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

ROOT = Path(__file__).resolve().parents[2]
templates = Jinja2Templates(directory=ROOT / "templates")

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    explainer = getattr(request.app.state, "explainer", None)
    return templates.TemplateResponse(request, "index.html", {"model": explainer.info if explainer else None})
