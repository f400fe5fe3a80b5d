"""Bounds on what one API request may hold: the size of its body, and the shape of the
documents in it (how many values, how deep, JSON data only).

The body bound is a pure ASGI middleware in front of the API; the document bound is
checked by :mod:`registry.schema` on every resource being registered, whatever the
way in (API, ``meshdns apply``, the agent's file). Decisions and figures:
docs/decisions.md, "Input limits and fuzzing (issue 8)".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A POST /apply of 10,000 small dataplanes (the most one request may hold) is about
# 2.2 MB of JSON; room for larger ones, with many inbounds and tags.
MAX_BODY_BYTES = 16 * 1024 * 1024
# The API reads a body whose Content-Type does not say JSON as YAML, about 7 s per MiB
# in PyYAML's pure-Python loader on this machine, holding the event loop: a lower bound.
MAX_YAML_BODY_BYTES = 1024 * 1024

# Every mapping, list and scalar counts one. A few thousand typical dataplanes hold
# about 100,000; YAML aliases make a small body hold millions (each use of an alias
# counts again), and these bound the work done before validation.
MAX_DOCUMENT_VALUES = 1_000_000
# Resources nest about 6 deep (networking.inbound[0].tags...); free-form fields such as
# metrics or mtls backends a few more.
MAX_DOCUMENT_DEPTH = 32


class BodyLimit:
    """Answers 413 to a request whose body is over the limit, before reading past it.

    A declared Content-Length over the limit is refused without reading anything; a
    body without one (chunked) is read up to the limit and refused once past it. The
    application gets the whole body as one message. The limit is ``max_bytes``, or
    ``max_yaml_bytes`` for bodies the API reads as YAML (Content-Type without "json").
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = MAX_BODY_BYTES,
        max_yaml_bytes: int = MAX_YAML_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_yaml_bytes = max_yaml_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        json_body = b"json" in headers.get(b"content-type", b"").lower()
        limit = self.max_bytes if json_body else self.max_yaml_bytes
        declared = _content_length(headers.get(b"content-length"))
        if declared is not None and declared > limit:
            await _refuse(send, limit, json_body)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # the client left: the application sees it go
                break
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _refuse(send, limit, json_body)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        pending = [first]

        async def replay() -> Message:
            # The body first, then the server's own messages (a disconnect, for long polls).
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


def _content_length(value: bytes | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None  # the HTTP server refuses malformed lengths itself
    return int(value)


async def _refuse(send: Send, limit: int, json_body: bool) -> None:
    kind = "" if json_body else " read as YAML (a Content-Type without json)"
    body = json.dumps(
        {
            "title": "Content Too Large",
            "details": f"Request body is over the limit of {_size(limit)}",
            "causes": [{"field": "(body)", "message": f"a body{kind} is at most {_size(limit)}"}],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: this connection cannot carry another.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit} bytes ({limit // (1024 * 1024)} MiB)"
    return f"{limit} bytes"


@dataclass(slots=True)
class DocumentBudget:
    """How many more values the documents of one request may hold."""

    values: int = MAX_DOCUMENT_VALUES

    @property
    def exhausted(self) -> bool:
        return self.values < 0


Location = tuple[Any, ...]


def document_problem(document: Any, budget: DocumentBudget) -> tuple[Location, str] | None:
    """Where and why ``document`` is no JSON data within the bounds; None when it is.

    Walks the document once, iteratively (no recursion to exhaust), charging every
    value to ``budget``: what YAML parsing made of a body, before any validation reads
    it. Only JSON data is kept, as stored resources are JSON: mappings with string keys,
    lists, strings (valid Unicode), finite numbers, booleans and null.
    """
    budget.values -= 1
    problem = _scalar_problem(document)
    if problem is not None:
        return (), problem
    stack: list[tuple[Any, Location]] = [(document, ())]
    while stack:
        value, location = stack.pop()
        # A container's items are charged when it is opened, before anything is made of
        # them: a list of millions of aliases costs one comparison.
        budget.values -= len(value)
        if budget.values < 0:
            budget.values = -1
            return location, (
                f"the request holds more than {MAX_DOCUMENT_VALUES:,} values (mappings, "
                "lists and scalars, each use of a YAML alias counted again); split it"
            )
        if len(location) >= MAX_DOCUMENT_DEPTH:
            return location, f"nests deeper than {MAX_DOCUMENT_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict):
                if not isinstance(key, str):
                    return (
                        *location,
                        key,
                    ), f"keys must be strings, not {_kind(key)} (quote the key)"
                if not _is_unicode(key):
                    return location, f"key {key!r} is not valid Unicode (a lone surrogate)"
            if isinstance(item, dict | list):
                stack.append((item, (*location, key)))
                continue
            problem = _scalar_problem(item)
            if problem is not None:
                return (*location, key), problem
    return None


def _scalar_problem(value: Any) -> str | None:
    """Why ``value`` is no JSON scalar; None when it is one, or a container."""
    if isinstance(value, str):
        return None if _is_unicode(value) else "is not valid Unicode (a lone surrogate)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number, not {value}"
    if value is None or isinstance(value, int | dict | list):  # bool is an int
        return None
    return f"must be JSON data, not {_kind(value)} (quote it as a string)"


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: Any) -> str:
    """How YAML users know the value: a date, binary data, a set..."""
    names = {"date": "a date", "datetime": "a timestamp", "bytes": "binary data", "set": "a set"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return names.get(type(value).__name__, f"a {type(value).__name__}")
