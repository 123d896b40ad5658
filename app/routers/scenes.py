"""Guided scenes (app/page/scenes.py): the list, and one scene's steps. The files are data, read once."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.page import scenes as scene_files
from app.errors import ApiError, documented

router = APIRouter(prefix="/api", responses=documented(400, 422, 503))


class SceneListItem(BaseModel):
    id: str
    title: dict[str, str]


@router.get("/scenes", response_model=list[SceneListItem], summary="The guided scenes: id and title")
def list_scenes() -> list[dict]:
    return [{"id": scene.id, "title": scene.title} for scene in scene_files.scenes().values()]


@router.get("/scenes/{scene_id}", response_model=scene_files.Scene, responses=documented(404),
            summary="One guided scene: what GPT-2 small is known to show, and its steps")
def get_scene(scene_id: str) -> scene_files.Scene:
    scene = scene_files.scenes().get(scene_id)
    if scene is None:
        raise ApiError(404, "unknown_scene", f"scene_id: no scene {scene_id!r}", field="scene_id")
    return scene
