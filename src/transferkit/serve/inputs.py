"""The images of a `POST /predict` request: multipart files, or JSON with base64 data.

Multipart file parts (any field name; ``images`` by convention) keep their file names. JSON is
``{"images": [{"name": "a.png", "data": "<base64>"}, ...]}``; an entry may also be the base64 string
itself or a ``data:image/...;base64,`` URL. Anything else is an `InputError` with its HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

MULTIPART, JSON = "multipart/form-data", "application/json"
MAX_IMAGES = 256  # per request; the body limit bounds their bytes, this bounds the bookkeeping


class InputError(Exception):
    """A request whose body cannot be read as images; `status` is the HTTP answer (415, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """One image as sent: its name and bytes, or why its entry could not be read (`error`)."""

    name: str
    data: bytes = b""
    error: str | None = None


async def read_uploads(request: Request) -> list[Upload]:
    """The request's images in the order sent.

    Raises:
        InputError: 415 for a content type other than multipart/form-data or application/json;
            422 for a body with no image in it, more than MAX_IMAGES, or malformed JSON.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == MULTIPART:
        uploads = await _multipart_uploads(request)
    elif content_type == JSON:
        uploads = _json_uploads(await request.body())
    else:
        raise InputError(
            415,
            f"Content type {content_type or '(none)'!r} is not accepted: send images as {MULTIPART} "
            f"files (curl -F images=@cell.png) or as {JSON} with base64 data "
            '({"images": [{"name": "cell.png", "data": "<base64>"}]}).',
        )
    if not uploads:
        raise InputError(422, "The request holds no image: attach files (field name 'images') or list them.")
    if len(uploads) > MAX_IMAGES:
        raise InputError(422, f"{len(uploads)} images in one request; send at most {MAX_IMAGES}.")
    return uploads


async def _multipart_uploads(request: Request) -> list[Upload]:
    # Parts over 1 MB are spooled by Starlette to files in the system's temporary folder, closed below.
    async with request.form(max_files=MAX_IMAGES + 1) as form:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        return [Upload(file.filename or f"image {i + 1}", await file.read()) for i, file in enumerate(files)]


def _json_uploads(body: bytes) -> list[Upload]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise InputError(422, f"The JSON body cannot be parsed: {err}.") from err
    entries = document.get("images") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InputError(422, 'The JSON body must be an object with a list "images" of base64 images.')
    return [_json_upload(entry, f"image {i + 1}") for i, entry in enumerate(entries)]


def _json_upload(entry: Any, default_name: str) -> Upload:
    name, data = default_name, entry
    if isinstance(entry, dict):
        name, data = str(entry.get("name") or default_name), entry.get("data")
    if not isinstance(data, str):
        return Upload(name, error=f"{name}: expected base64 text (or {{'name', 'data'}}), not {data!r:.40}.")
    if data.startswith("data:"):
        data = data.partition(",")[2]  # a data URL: the base64 after the comma
    try:
        return Upload(name, base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError) as err:
        return Upload(name, error=f"{name}: not valid base64 ({err}).")
