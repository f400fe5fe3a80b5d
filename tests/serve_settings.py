"""The components' settings as `meshdns serve` builds them, for tests: from the settings'
defaults with the options given (``vip_settings(vip_cidr="10.96.0.0/12")``), so no test
repeats an option's default."""

from __future__ import annotations

from dnsserver.config import DnsLimits
from meshdns import wiring
from meshdns.settings import Settings
from registry.agents.liveness import LivenessSettings
from registry.store import VipSettings


def vip_settings(**options: object) -> VipSettings:
    """The VIP ranges and quarantine, with the options in ``options`` given."""
    return wiring.vip_settings(Settings(**options))  # type: ignore[arg-type]


def dns_limits(**options: object) -> DnsLimits:
    """What one DNS client may cost, with the options in ``options`` given."""
    return wiring.dns_limits(Settings(**options))  # type: ignore[arg-type]


def liveness_settings(**options: object) -> LivenessSettings:
    """The liveness windows, with the options in ``options`` given."""
    return wiring.liveness_settings(Settings(**options))  # type: ignore[arg-type]
