"""ZoneConfig: `serve`'s defaults, and settings that cannot work are refused up front."""

from __future__ import annotations

import pytest

from dnsserver import ConfigError, DnsError
from tests.dns.dnstesting import zone_config


def test_defaults():
    config = zone_config()
    assert (config.domain, config.default_mesh, config.ns_address) == ("mesh", "default", None)
    assert (config.ttl, config.endpoints_ttl, config.negative_ttl) == (30, 5, 30)
    assert config.max_udp_payload == 1232


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"domain": ""}, "domain"),
        ({"domain": "."}, "domain"),
        ({"domain": "a..mesh"}, "domain"),
        ({"domain": "x" * 64}, "domain"),
        ({"domain": "mesh\u00e9"}, "domain"),
        ({"ttl": -1}, "ttl"),
        ({"endpoints_ttl": 2**31}, "endpoints_ttl"),
        ({"negative_ttl": -5}, "negative_ttl"),
        ({"max_udp_payload": 511}, "max_udp_payload"),
        ({"max_udp_payload": 65536}, "max_udp_payload"),
    ],
)
def test_invalid_settings(settings, field):
    with pytest.raises(ConfigError, match=field) as error:
        zone_config(**settings)
    assert isinstance(error.value, DnsError)
