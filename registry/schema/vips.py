"""``VirtualIPs``: meshdns's own document recording a mesh's VIPs, written by `meshdns
export` after the mesh's resources so that `meshdns apply` of the export on an empty
control plane gives every service the VIP it had (not a Kuma type: Kuma keeps its VIPs in
an internal config, not in what `kumactl export` writes)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.errors import Cause, InvalidResource
from registry.schema import field_path
from registry.schema.fields import ResourceName

VIRTUAL_IPS = "VirtualIPs"
# What a recorded VIP names: a legacy kuma.io/service, or a resource of a service kind.
VIP_KINDS = ("Service", "MeshService", "MeshExternalService", "MeshMultiZoneService")


class RecordedVip(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["Service", "MeshService", "MeshExternalService", "MeshMultiZoneService"] = (
        "Service"
    )
    service: str = Field(min_length=1, max_length=253)
    ip: IPv4Address
    ip6: IPv6Address | None = None


class VirtualIPs(BaseModel):
    """A mesh's VIPs (``name`` is the mesh's name, as Kuma names a mesh's own records)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["VirtualIPs"]
    mesh: ResourceName
    name: ResourceName
    vips: list[RecordedVip] = Field(max_length=1_000_000)


def parse_virtual_ips(document: Any, where: str = "") -> VirtualIPs:
    try:
        return VirtualIPs.model_validate(document)
    except ValidationError as error:
        causes = [
            Cause(where + (field_path(item["loc"]) or "(document)"), item["msg"])
            for item in error.errors()
        ]
        raise InvalidResource("VirtualIPs is not valid", causes) from None
