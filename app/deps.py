"""What routes depend on: the Lab (the one front door, 503 while the model loads), the Caller
(what the Lab needs to know of the client), the rooms, and the classroom's view of a request
(the Visit: where it arrived, the teacher token it carries)."""

from __future__ import annotations

from fastapi import Request

from app.errors import ApiError
from app.lab import Caller, Lab
from app.rooms.classroom import TEACHER_COOKIE, Teacher, Visit
from app.rooms.store import Followers


def get_lab(request: Request) -> Lab:
    lab = getattr(request.app.state, "lab", None)
    if lab is None:
        raise ApiError(503, "loading", "The model is still loading; try again in a moment.", headers={"Retry-After": "5"})
    return lab


def get_caller(request: Request) -> Caller:
    return Caller(gzip="gzip" in request.headers.get("accept-encoding", ""), disconnected=request.is_disconnected)


def get_rooms(request: Request):
    """The follow-the-teacher rooms: app/rooms/store.py's LocalRoomStore, or whatever a deployment set
    app.state.rooms to before start-up (the same async interface)."""
    return request.app.state.rooms


def get_room_followers(request: Request) -> Followers:
    return request.app.state.room_followers


def get_visit(request: Request) -> Visit:
    return Visit.read(request.scope.get("server"), request.url.scheme, str(request.base_url),
                      request.headers.get("authorization", ""), request.cookies.get(TEACHER_COOKIE))


def get_teacher(request: Request) -> Teacher:
    return request.app.state.teacher


async def require_teacher(request: Request) -> None:
    """A dependency for teacher actions: 403 teacher_only unless the request is the teacher's."""
    get_teacher(request).check(get_visit(request))
