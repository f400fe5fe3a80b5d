"""HostnameGenerator templates: the part of Go's text/template that Kuma's templates use.

Kuma renders ``spec.template`` with Go's ``text/template`` over ``.Name``,
``.DisplayName``, ``.Namespace``, ``.Mesh`` and ``.Zone``, plus a ``label "key"``
function that fails when the resource has no such label. Every template Kuma ships or
documents is text and those actions, so that is what is implemented here, with Go's
trim markers (``{{-`` and ``-}}``) and comments (``{{/* ... */}}``). Anything else
(pipelines, conditionals, variables, other functions) is refused when the template is
written, with its position, rather than accepted and rendered differently from Kuma.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from registry.errors import RegistryError

FIELDS = ("Name", "DisplayName", "Namespace", "Mesh", "Zone")
_SUPPORTED = (
    "{{ .Name }}, {{ .DisplayName }}, {{ .Namespace }}, {{ .Mesh }}, {{ .Zone }} and "
    '{{ label "key" }}'
)
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
# Go's interpreted string literal (double quotes, escapes) or raw string (backquotes).
_LABEL = re.compile(r'label\s+("(?:[^"\\\n]|\\.)*"|`[^`]*`)')
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}


class TemplateError(RegistryError):
    """A hostname template is not valid, or could not be rendered."""


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Field:
    name: str


@dataclass(frozen=True, slots=True)
class Label:
    key: str


Part = Text | Field | Label


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: text, fields and label lookups, in order."""

    source: str
    parts: tuple[Part, ...]

    def render(self, values: Mapping[str, str], labels: Mapping[str, str]) -> str:
        """The template filled in; TemplateError when a label it asks for is missing."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Text):
                out.append(part.text)
            elif isinstance(part, Field):
                out.append(values.get(part.name, ""))
            else:
                value = labels.get(part.key)
                if value is None:
                    raise TemplateError(f"label {part.key} not found")
                out.append(value)
        return "".join(out)


def _position(source: str, offset: int) -> str:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{column}"


def _unquote(literal: str, source: str, offset: int) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    body, out, index = literal[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1 : index + 2]
            if escaped not in _ESCAPES:
                raise TemplateError(
                    f"template {source!r}: {_position(source, offset)}: "
                    f"unsupported escape \\{escaped} in a string"
                )
            out.append(_ESCAPES[escaped])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def parse(source: str) -> Template:
    """Parse ``source``; TemplateError naming the template and the position of the
    first thing this subset does not take."""
    parts: list[Part] = []
    position = 0
    pending = ""
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if match.group(1):
            text = text.rstrip(" \t\r\n")  # {{- trims the space before it
        pending += text
        inner = match.group(2).strip()
        where = f"template {source!r}: {_position(source, match.start())}"
        if _COMMENT.fullmatch(inner):
            pass
        elif field := _FIELD.fullmatch(inner):
            if field.group(1) not in FIELDS:
                raise TemplateError(
                    f"{where}: unknown field .{field.group(1)}; templates use {_SUPPORTED}"
                )
            parts += [Text(pending)] if pending else []
            pending = ""
            parts.append(Field(field.group(1)))
        elif label := _LABEL.fullmatch(inner):
            parts += [Text(pending)] if pending else []
            pending = ""
            parts.append(Label(_unquote(label.group(1), source, match.start())))
        else:
            shown = inner if len(inner) <= 40 else inner[:37] + "..."
            raise TemplateError(
                f"{where}: {{{{ {shown} }}}} is not supported; templates use {_SUPPORTED}"
            )
        position = match.end()
        if match.group(3):
            # -}} trims the space after it.
            rest = source[position:]
            position += len(rest) - len(rest.lstrip(" \t\r\n"))
    tail = source[position:]
    if "{{" in tail:
        raise TemplateError(
            f"template {source!r}: {_position(source, position + tail.index('{{'))}: "
            "unclosed action (no }} after {{)"
        )
    pending += tail
    if pending:
        parts.append(Text(pending))
    return Template(source, tuple(parts))


# RFC 1123 subdomain, as Kubernetes checks it (Kuma's rule for generated hostnames).
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_STUBS = {name: name.lower() for name in FIELDS}


def hostname_problem(hostname: str) -> str | None:
    """Why ``hostname`` is not an RFC 1123 subdomain (a DNS name); None if it is one."""
    if len(hostname) > 253:
        return f"hostname {hostname[:40]!r}... is longer than 253 characters"
    if not _SUBDOMAIN.fullmatch(hostname):
        return (
            f"hostname {hostname!r} is not a valid DNS name: a lowercase RFC 1123 subdomain "
            "must consist of lower case alphanumeric characters, '-' or '.', and must start "
            "and end with an alphanumeric character"
        )
    if any(len(label) > 63 for label in hostname.split(".")):
        return f"hostname {hostname!r} has a label longer than 63 characters"
    return None


def check(source: str) -> Template:
    """Parse a template being written and render it with stand-in values, as Kuma does at
    creation: TemplateError unless that gives a valid DNS name."""
    if not source:
        raise TemplateError("must not be empty")
    template = parse(source)
    stub_labels = {part.key: "label" for part in template.parts if isinstance(part, Label)}
    rendered = template.render(_STUBS, stub_labels)
    problem = hostname_problem(rendered)
    if problem is not None:
        raise TemplateError(f"template {source!r} renders to {rendered!r}: {problem}")
    return template


def static_suffix(template: Template) -> str | None:
    """The fixed text a template's hostnames end with, as a DNS zone (``svc.mesh.local``
    for ``{{ .DisplayName }}.svc.mesh.local``); None when it ends with an action or its
    tail is no DNS name."""
    if not template.parts or not isinstance(template.parts[-1], Text):
        return None
    if len(template.parts) == 1:
        return None  # no action at all: a fixed name, not a family of names under a zone
    tail = template.parts[-1].text
    if not tail.startswith("."):
        return None  # "{{ .Name }}-svc.mesh.local": the action is inside the first label
    suffix = tail.strip(".").lower()
    return suffix if suffix and hostname_problem(suffix) is None else None
