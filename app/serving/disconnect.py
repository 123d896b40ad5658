"""A request whose client has gone is not worked on. Starlette keeps running a plain handler
after its client disconnects; this middleware cancels it instead, so the forward pass it was
queued for is dropped before it runs, and long work (the logit lens, an analysis) stops at its
next check between chunks."""

from __future__ import annotations

import asyncio


class CancelWhenGone:
    """Pure ASGI middleware, mounted inside errors.BodySizeLimit, which hands the whole body
    over in one message: every later message from the client can only be its disconnect."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = await receive()
        if body["type"] == "http.disconnect":
            return
        gone = asyncio.Event()
        finished = False

        async def app_receive():
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            await gone.wait()
            return {"type": "http.disconnect"}

        async def noting_send(message):
            nonlocal finished
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        # The handler runs in a task of its own (sharing this one's context: the client's
        # address), so that it can be cancelled without cancelling the server's request task.
        handler = asyncio.ensure_future(self.app(scope, app_receive, noting_send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done() and not finished:  # the client left before its answer
                handler.cancel()
            await asyncio.wait({handler})
            if not handler.cancelled():
                handler.result()  # an exception: to the access log's handler
        finally:
            watcher.cancel()
            if not handler.done():  # this task itself was cancelled (the server is stopping)
                handler.cancel()
