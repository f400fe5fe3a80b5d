"""Reading resource documents from YAML or JSON text: strictly, as kubectl does.

PyYAML and the json module both let a key given twice in one mapping win silently with
its last value: a Dataplane with two ``address:`` keys would be registered at whichever
came last. Here a repeated key is an error naming the key and its line (JSON: the key),
on every way a document comes in (``meshdns apply``, the API's bodies, the agent's file).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from registry.errors import RegistryError

# libyaml's parser when PyYAML was built with it (several times faster), else Python's.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DocumentError(RegistryError):
    """The text is not valid YAML or JSON."""


class _StrictLoader(_BaseLoader):
    """yaml.safe_load's loader, refusing a mapping that gives one key twice."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Hashable, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue  # `<<: *base`: merged keys may be overridden, as YAML says
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    continue  # the base constructor reports it
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConstructorError(
                        None,
                        None,
                        f"key {_shown(key)} is given twice in one mapping (first at line "
                        f"{seen[key]}, again at line {line})",
                        key_node.start_mark,
                    )
                seen[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _shown(key: object) -> str:
    text = json.dumps(key) if isinstance(key, str) else repr(key)
    return text if len(text) <= 60 else text[:57] + '..."'


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error: what, and at which line and column."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{error.problem}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def load_yaml_documents(text: str | bytes) -> list[Any]:
    """Every document of a (multi-document) YAML or JSON text, empty ones left out."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]
    except RecursionError:
        raise DocumentError("nested deeper than a resource can be") from None
    except yaml.YAMLError as error:
        raise DocumentError(_yaml_problem(error)) from None


def load_yaml(text: str | bytes) -> Any:
    """One YAML (or JSON) document."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except RecursionError:
        raise DocumentError("nested deeper than a resource can be") from None
    except yaml.YAMLError as error:
        raise DocumentError(_yaml_problem(error)) from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise DocumentError(f"key {_shown(key)} is given twice in one object")
        mapping[key] = value
    return mapping


def load_json(text: str | bytes) -> Any:
    """One JSON document, refusing an object that gives one key twice."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise DocumentError("nested deeper than a resource can be") from None
    except ValueError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DocumentError(reason) from None
