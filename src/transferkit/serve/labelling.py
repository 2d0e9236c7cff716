"""`transferkit label`: a local web page that shows pool images one at a time and writes labels.csv.

Bound to 127.0.0.1 only: the page reads image files from disk and writes a file, for the person at this
machine. Each answer is written to labels.csv (atomically) before the page moves on, so closing the
browser or killing the server loses nothing; a restart resumes at the first unlabelled image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from transferkit.active.labels import LabelFile, LabellingSession, resolve_classes
from transferkit.active.paths import unique_paths
from transferkit.data.decode import decode_image
from transferkit.data.unlabeled import load_unlabeled
from transferkit.errors import TransferkitError
from transferkit.serve.labelling_page import PAGE

HOST = "127.0.0.1"
DEFAULT_PORT = 8001
SHOWN_SIZE = 1024  # longest side of the image sent to the page: enough to judge, quick to send


class Answer(BaseModel):
    index: int
    label: str | None = None


def shortcut_keys(classes: list[str]) -> list[list[str]]:
    """Each class's keys: 1..9 for the first nine, and its initial when no other class shares it."""
    initials = [name[:1].lower() for name in classes]
    keys = []
    for position, initial in enumerate(initials):
        own = [str(position + 1)] if position < 9 else []
        if initial.isalpha() and initials.count(initial) == 1:
            own.append(initial)
        keys.append(own)
    return keys


def create_session(pool: str, classes: list[str] | None, out: str | os.PathLike[str]) -> LabellingSession:
    """The session over the images of `pool` (folder or manifest, e.g. suggest's to_label.csv)."""
    store = LabelFile(out)
    images = unique_paths([str(Path(path).absolute()) for path in load_unlabeled(pool)])
    return LabellingSession(images, resolve_classes(classes, store), store)


def create_app(session: LabellingSession) -> FastAPI:
    """The page, the images and the answers of one labelling session."""
    app = FastAPI(title="transferkit label", docs_url=None, redoc_url=None, openapi_url=None)
    keys = shortcut_keys(session.classes)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/state")
    def get_state() -> dict[str, Any]:
        return session_state(session, keys)

    @app.get("/image/{index}")
    def image(index: int) -> Response:
        if not 0 <= index < len(session.images):
            raise HTTPException(404, f"no image {index}")
        headers = {"Cache-Control": "no-store"}
        return Response(_png(session.images[index]), media_type="image/png", headers=headers)

    _add_answers(app, session, keys)
    return app


def _add_answers(app: FastAPI, session: LabellingSession, keys: list[list[str]]) -> None:
    """POST routes that change labels.csv (label, undo) or the session (skip); each returns the new state."""

    @app.post("/api/label")
    def label(answer: Answer) -> dict[str, Any]:
        _answer(lambda: session.label(answer.index, answer.label or ""))
        return session_state(session, keys)

    @app.post("/api/skip")
    def skip(answer: Answer) -> dict[str, Any]:
        _answer(lambda: session.skip(answer.index))
        return session_state(session, keys)

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        session.undo()
        return session_state(session, keys)


def session_state(session: LabellingSession, keys: list[list[str]]) -> dict[str, Any]:
    """What the page shows: classes with their keys, progress, the current image."""
    current = session.current()
    shown = None
    if current is not None:
        path = session.images[current]
        shown = {"index": current, "path": path, "name": Path(path).name}
    return {
        "classes": [{"name": name, "keys": own} for name, own in zip(session.classes, keys, strict=True)],
        "counts": session.counts(),
        "current": shown,
        "can_undo": session.can_undo(),
        "out": str(session.store.path),
    }


def _answer(write: Callable[[], None]) -> None:
    try:
        write()
    except TransferkitError as err:
        raise HTTPException(400, str(err)) from err


def _png(path: str) -> bytes:
    """The image as the model sees it (EXIF orientation, any mode), as a PNG any browser shows."""
    try:
        image = decode_image(path, 3)
    except TransferkitError as err:
        raise HTTPException(422, str(err)) from err
    image.thumbnail((SHOWN_SIZE, SHOWN_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def serve_labelling(session: LabellingSession, port: int = DEFAULT_PORT) -> None:
    """Runs the page at http://127.0.0.1:PORT until interrupted."""
    import uvicorn

    uvicorn.run(create_app(session), host=HOST, port=port, log_level="warning")
