"""The names Kuma's multi-zone sync gives resources it copies: ``<display name>-<hash>``.

Kuma's ``HashedName`` (kds/hash): the display name, cut to fit, a dash, and the 64-bit
FNV-1a hash of the mesh, the display name and the extra values (the zone and namespace
labels), concatenated without separator, written as 16 hex digits mapped onto the
Kubernetes "safe" alphabet. The hash's inputs are the same on global and in every zone,
so a MeshService keeps one name everywhere it is copied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from registry.meshservice.states import DISPLAY_NAME_LABEL

# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no 0/1/3 (no words, no lookalikes).
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_HASH_SUFFIX = 1 + 16  # the dash and the encoded hash
MAX_NAME = 253  # Kuma's longest resource name
MAX_LABEL_NAME = 63  # ours for the service kinds, whose names are DNS labels
_HASHED = re.compile(f"-[{_SAFE_ALPHABET}]{{16}}$")


def display_name(name: str, labels: Mapping[str, str] | None) -> str:
    """Kuma's display name of a resource: its ``kuma.io/display-name`` label, else its name."""
    return (labels or {}).get(DISPLAY_NAME_LABEL) or name


def fnv64a(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


def _safe_encode(hex_digits: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(char) % len(_SAFE_ALPHABET)] for char in hex_digits)


def hashed_name(mesh: str, name: str, *values: str, max_length: int = MAX_NAME) -> str:
    """Kuma's HashedName of resource `name` of `mesh` (``""`` for a global-scoped one),
    with `values` (its zone and namespace labels, absent ones as ``""``) in the hash.

    Kuma cuts the name to fit 253 characters; the service kinds' names are one DNS label
    here (registry/schema/services.py), so their callers pass ``MAX_LABEL_NAME``: a
    display name longer than 46 characters is cut shorter than Kuma would.
    """
    digest = fnv64a("".join((mesh, name, *values)).encode())
    return f"{name[: max_length - _HASH_SUFFIX]}-{_safe_encode(f'{digest:016x}')}"


def looks_hashed(name: str) -> bool:
    """Whether `name` ends as a hashed name does: a copy's, most likely."""
    return _HASHED.search(name) is not None
