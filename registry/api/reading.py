"""What the API reads from a request: its body as a resource document, the names in its
path, its tag filters and its page queries; anything a resource could not be is a 400."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from registry.documents import DocumentError, load_json, load_yaml
from registry.errors import Cause, InvalidResource
from registry.models import NAME_LENGTH
from registry.schema import Dataplane, parse_resource, resource_name_problem

MAX_PAGE_SIZE = 1000
SizeQuery = Query(100, ge=1, le=MAX_PAGE_SIZE)
# The databases count rows in signed 64 bits.
OffsetQuery = Query(0, ge=0, le=2**63 - 1)
# Path parameters that name resources: refused unless they are a name a resource can have.
NAME_PARAMS = ("mesh", "name")


async def read_document(request: Request) -> Any:
    """Parse a request body as JSON or YAML (YAML also reads JSON); a key given twice in
    one mapping is an error, as kubectl makes it."""
    body = await request.body()
    if not body.strip():
        raise InvalidResource("Request body is empty", [Cause("(body)", "a resource is required")])
    try:
        if "json" in request.headers.get("content-type", ""):
            return load_json(body)
        return load_yaml(body)
    except DocumentError as error:
        raise InvalidResource(
            "Request body is neither valid JSON nor YAML", [Cause("(body)", error.message)]
        ) from None


def fill_identity(document: Any, expected: dict[str, str]) -> Any:
    """Take type, mesh and name from the URL, refusing a body that names others."""
    if not isinstance(document, dict):
        return document
    causes = [
        Cause(key, f"must be {value!r} as in the URL, not {document[key]!r}")
        for key, value in expected.items()
        if key in document and document[key] != value
    ]
    if causes:
        raise InvalidResource("Resource does not match the URL", causes)
    return {**expected, **document}


async def read_dataplane(request: Request, mesh: str, name: str) -> Dataplane:
    """The Dataplane a request body describes, at the mesh and name of its URL."""
    document = fill_identity(
        await read_document(request), {"type": "Dataplane", "mesh": mesh, "name": name}
    )
    resource = parse_resource(document)
    assert isinstance(resource, Dataplane)
    return resource


def tag_filter(tags: list[str]) -> dict[str, str]:
    """The repeated ``tag=key:value`` query of a dataplane listing, as a mapping."""
    wanted: dict[str, str] = {}
    for index, tag in enumerate(tags):
        key, sep, value = tag.partition(":")
        if not sep or not key or "\x00" in tag:
            raise InvalidResource(
                "Request is not valid", [Cause(f"tag[{index}]", f"{tag!r} is not key:value")]
            )
        wanted[key] = value
    return wanted


def check_path_names(params: dict[str, Any]) -> None:
    """Names in the path must be names a resource can have: anything else (``..``, a NUL,
    which Postgres cannot even hold in text, a 10 kB string) is refused with 400 before a
    handler acts on it."""
    for key in NAME_PARAMS:
        value = params.get(key)
        if not isinstance(value, str):
            continue
        problem: str | None
        if "\x00" in value or len(value) > NAME_LENGTH:
            problem = f"no resource is named so (at most {NAME_LENGTH} characters, no NUL)"
        else:
            problem = resource_name_problem(value)
        if problem is not None:
            raise InvalidResource(
                "Request is not valid", [Cause(key, f"{_shown_name(value)} {problem}")]
            )


def _shown_name(value: str) -> str:
    return repr(value) if len(value) <= 48 else f"{value[:40]!r}... ({len(value)} characters)"
