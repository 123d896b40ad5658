"""Follow the teacher (issue 13): open a room, publish the teacher's view to it, and follow it
live (server-sent events). The work is app/rooms/store.py's; the store is app.state.rooms."""

from __future__ import annotations

import io
from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import Response, StreamingResponse

from app.rooms import classroom
from app.rooms.classroom import Teacher, Visit
from app.serving.clients import client
from app.serving.settings import Settings
from app.deps import get_room_followers, get_rooms, get_teacher, get_visit, require_teacher
from app.errors import documented
from app.rooms.store import Followers, follow, normalize
from app.schemas import Classroom, RoomOpened, RoomSnapshot, RoomState, RoomVersion

router = APIRouter(prefix="/api", responses=documented(400, 413, 422, 503))

Code = Annotated[str, Path(min_length=1, max_length=16, description="The room's code, as issued (any case).")]


TeacherSecret = Annotated[str, Header(max_length=256, description=(
    "The secret POST /api/rooms gave the teacher's page (without it: 403 not_teacher)."))]


def follow_path(code: str) -> str:
    return f"/r/{code}"


def students_url(settings: Settings, visit: Visit, code: str) -> tuple[str, bool]:
    return classroom.students_url(settings, visit, follow_path(normalize(code)))


@router.get("/classroom", response_model=Classroom, summary="Whether this page is the teacher's, and where students "
            "reach this server")
async def classroom_info(request: Request, teacher: Teacher = Depends(get_teacher), visit: Visit = Depends(get_visit)) -> dict:
    return classroom.summary(request.app.state.settings, teacher, visit)


@router.post("/rooms", response_model=RoomOpened, status_code=201, responses=documented(403, 429),
             dependencies=[Depends(require_teacher)],
             summary="Open a room the teacher's page publishes its view to (the teacher's, where students can reach "
                     "the server)")
async def open_room(request: Request, rooms=Depends(get_rooms), visit: Visit = Depends(get_visit)) -> dict:
    opened = await rooms.open(client.get())
    url, reachable = students_url(request.app.state.settings, visit, opened["code"])
    return {**opened, "follow_url": follow_path(opened["code"]), "students_url": url, "reachable": reachable}


@router.put("/rooms/{code}/state", response_model=RoomVersion, responses=documented(403, 404, 410),
            summary="Publish the teacher's view (only with the secret the room was opened with)")
async def publish(code: Code, state: RoomState, rooms=Depends(get_rooms), x_room_secret: TeacherSecret = "") -> dict:
    version = await rooms.publish(code, x_room_secret, state.model_dump(mode="json"))
    return {"version": version}


@router.delete("/rooms/{code}", status_code=204, response_class=Response, responses=documented(403, 404, 410),
               dependencies=[Depends(require_teacher)], summary="Close the room (only with the secret it was opened with): its followers are told at once")
async def close(code: Code, rooms=Depends(get_rooms), x_room_secret: TeacherSecret = "") -> Response:
    await rooms.close(code, x_room_secret)
    return Response(status_code=204)


@router.get("/rooms/{code}", response_model=RoomSnapshot, responses=documented(404, 410),
            summary="The room's current state")
async def snapshot(code: Code, rooms=Depends(get_rooms)) -> dict:
    version, state = await rooms.snapshot(code)
    return {"version": version, "state": state}


@router.get(
    "/rooms/{code}/events",
    summary="Follow the room: its state now, then each new one, as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "First the current state, then each new version, each as `id: <version>` and "
                                    "`data: {version, state}`; a `: heartbeat` comment every 15 s while nothing "
                                    "changes; `event: end` with {detail, code} when the room closes."},
               **documented(404, 410, 429)},
)
async def events(code: Code, request: Request, rooms=Depends(get_rooms),
                 followers: Followers = Depends(get_room_followers)) -> StreamingResponse:
    version, state = await rooms.snapshot(code)  # 404 / 410 before the stream starts
    ticket = followers.enter(code, client.get())  # 503 room_full, 429 client_limit
    stream = follow(rooms, normalize(code), version, state, ticket, request.is_disconnected,
                    stopping=followers.stopping)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/rooms/{code}/qr.svg", response_class=Response, responses={
    200: {"content": {"image/svg+xml": {}}, "description": "A QR code of the room's absolute follow URL."},
    **documented(404, 410)}, summary="The room's follow URL as a QR code (SVG)")
async def qr(code: Code, request: Request, rooms=Depends(get_rooms), visit: Visit = Depends(get_visit)) -> Response:
    await rooms.snapshot(code)  # 404 / 410
    url, _ = students_url(request.app.state.settings, visit, code)
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", xmldecl=False, omitsize=True, border=2, dark="#000",
                                    light="#fff", title=url, svgclass=None, lineclass=None)
    return Response(out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
