"""Claim tables: names whose records are merged from whoever claims them, one claimant at
a time.

A claimant (a legacy service, a MeshService and its kin) *claims* the names it answers
at, and needs the names above them to exist (empty non-terminals, RFC 8020). A name's
records are merged from the claims on it alone, so a changed claimant only touches its
own names: applying it costs what the claimant holds, not what the registry holds. The
tables are persistent maps (:mod:`immutables`), so an update makes new tables sharing
all untouched entries with the old ones, and swapping them in is one assignment.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from immutables import Map

from dnsserver.records import Name
from dnsserver.zone import EMPTY_NODE, Node
from registry.snapshot import IPAddress

# What a claimant keeps about each of its addresses (a PTR's TTL, its targets...).
AddressUse = TypeVar("AddressUse")


class ClaimKind(enum.Enum):
    """What a claim is; decides how claims on one name merge."""

    # A claimant's own names: on a collision (names fold case) the least claimant wins.
    OWN = enum.auto()
    # Kuma's dotted aliases: only where no claimant has an own name.
    ALIAS = enum.auto()


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    node: Node


@dataclass(frozen=True, slots=True)
class ClaimSet(Generic[AddressUse]):
    """Everything one claimant puts in the tables, so that it can be taken out again.

    Each name is claimed once; ``ancestors`` are the names that exist because the
    claimed ones are below them; ``addresses`` are the claimant's addresses, each with
    what the tables keep about it.
    """

    claims: tuple[tuple[Name, Claim], ...]
    ancestors: frozenset[Name]
    addresses: tuple[tuple[IPAddress, AddressUse], ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimTables(Generic[AddressUse]):
    """The answers (``nodes``), the address index, and the claims they are merged from."""

    nodes: Map[Name, Node]
    addresses: Map[IPAddress, Map[str, AddressUse]]
    claims: Map[Name, Map[str, Claim]]
    # How many claimants need each empty non-terminal.
    ancestors: Map[Name, int]
    claimants: Map[str, ClaimSet[AddressUse]]

    @classmethod
    def of_nodes(cls, nodes: Map[Name, Node]) -> ClaimTables[AddressUse]:
        """Tables holding ``nodes`` (the server's own names) and no claim."""
        return cls(nodes=nodes, addresses=Map(), claims=Map(), ancestors=Map(), claimants=Map())

    def apply(
        self,
        changes: Iterable[tuple[str, ClaimSet[AddressUse] | None]],
        fixed: Container[Name] = (),
    ) -> ClaimTables[AddressUse]:
        """The tables with each named claimant's claims replaced (None: gone).

        Names in ``fixed`` are the server's own (an apex, its name server): their nodes
        are never touched, whoever claims them.
        """
        claimants = self.claimants.mutate()
        claims = self.claims.mutate()
        ancestors = self.ancestors.mutate()
        addresses = self.addresses.mutate()
        touched: set[Name] = set()
        for claimant, new in changes:
            old = claimants.get(claimant)
            if old is not None:
                for key, _ in old.claims:
                    remaining = claims[key].delete(claimant)
                    if remaining:
                        claims[key] = remaining
                    else:
                        del claims[key]
                    touched.add(key)
                for ancestor in old.ancestors:
                    count = ancestors[ancestor] - 1
                    if count:
                        ancestors[ancestor] = count
                    else:
                        del ancestors[ancestor]
                    touched.add(ancestor)
                for address, _ in old.addresses:
                    remaining_uses = addresses[address].delete(claimant)
                    if remaining_uses:
                        addresses[address] = remaining_uses
                    else:
                        del addresses[address]
                del claimants[claimant]
            if new is not None:
                for key, claim in new.claims:
                    claims[key] = claims.get(key, Map()).set(claimant, claim)
                    touched.add(key)
                for ancestor in new.ancestors:
                    ancestors[ancestor] = ancestors.get(ancestor, 0) + 1
                    touched.add(ancestor)
                for address, use in new.addresses:
                    addresses[address] = addresses.get(address, Map()).set(claimant, use)
                claimants[claimant] = new

        nodes = self.nodes.mutate()
        for owner in touched:
            if owner in fixed:
                continue
            node = _merge(claims.get(owner))
            if node is None and owner in ancestors:
                node = EMPTY_NODE
            if node is None:
                nodes.pop(owner, None)
            else:
                nodes[owner] = node
        return ClaimTables(
            nodes=nodes.finish(),
            addresses=addresses.finish(),
            claims=claims.finish(),
            ancestors=ancestors.finish(),
            claimants=claimants.finish(),
        )


def _merge(claims: Map[str, Claim] | None) -> Node | None:
    """The node of a name from the claims on it; None when nobody claims it."""
    if not claims:
        return None
    if len(claims) == 1:
        # The common case, and the merge of one claim is the claim itself.
        for claim in claims.values():
            return claim.node
    ranked = sorted(claims.items(), key=lambda item: (item[1].kind is ClaimKind.ALIAS, item[0]))
    return ranked[0][1].node
