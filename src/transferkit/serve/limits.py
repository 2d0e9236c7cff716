"""`UploadLimit`: request bodies over the limit are refused with 413 before they are read whole."""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from `receive` once a body without a truthful Content-Length passes the limit."""


class UploadLimit:
    """ASGI middleware: 413 for a declared Content-Length over `max_bytes` without reading a byte, and
    for a body (chunked, or longer than declared) whose bytes pass `max_bytes` while it streams in.

    Counting in `receive` is what makes the limit hold for chunked uploads: the application parses
    (and python-multipart spools to temporary files) only the bytes this wrapper lets through. Once the
    limit is passed, whatever the application answers is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"declares {declared:,} bytes")
            return
        await _LimitedRequest(self, send).run(scope, receive)

    async def _refuse(self, send: Send, what: str) -> None:
        limit_mb = self.max_bytes / 1024 / 1024
        detail = (
            f"The request body {what}, over this server's limit of {self.max_bytes:,} bytes "
            f"({limit_mb:g} MB). Send fewer or smaller images per request, or start the server with a "
            "larger --max-upload-mb."
        )
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _LimitedRequest:
    """One request's byte count and whether its response has started (state the middleware must not
    share between concurrent requests)."""

    def __init__(self, limit: UploadLimit, send: Send) -> None:
        self.limit, self.send = limit, send
        self.received = 0
        self.too_large = False
        self.started = False

    async def run(self, scope: Scope, receive: Receive) -> None:
        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit.max_bytes:
                    self.too_large = True
                    raise BodyTooLarge
            return message

        with contextlib.suppress(BodyTooLarge):  # the application let it through; answered below
            await self.limit.app(scope, counted_receive, self.guarded_send)
        if self.too_large and not self.started:
            self.started = True
            await self.limit._refuse(self.send, f"passed {self.limit.max_bytes:,} bytes while streaming")

    async def guarded_send(self, message: Message) -> None:
        # The application may turn the interrupted read into its own error (a 400); the 413 says why.
        if self.too_large:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects a malformed length itself
    return None
