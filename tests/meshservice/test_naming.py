"""Kuma's hashed names of copied resources (kds/hash.HashedName), checked against Kuma's
own test data."""

from __future__ import annotations

from registry.meshservice.naming import MAX_LABEL_NAME, display_name, hashed_name, looks_hashed


def test_the_hashed_name_is_kumas():
    # Kuma's golden: backend of mesh-1, zone-k8s, namespace ns-k8s.
    assert hashed_name("mesh-1", "backend", "zone-k8s", "ns-k8s") == "backend-z7f47x24v9f5x2b4"


def test_absent_labels_hash_as_nothing():
    assert hashed_name("default", "redis", "", "") == hashed_name("default", "redis")
    assert hashed_name("default", "redis", "zone-a") != hashed_name("default", "redis")


def test_a_long_display_name_is_cut_to_fit():
    long = "a" * 300
    assert len(hashed_name("default", long)) == 253
    label = hashed_name("default", "b" * 60, "zone-a", max_length=MAX_LABEL_NAME)
    assert len(label) == 63 and label.startswith("b" * 46 + "-")


def test_the_display_name_is_the_label_else_the_name():
    assert display_name("redis-x", {"kuma.io/display-name": "redis"}) == "redis"
    assert display_name("redis-x", None) == "redis-x"


def test_a_hashed_name_is_told_by_its_suffix():
    assert looks_hashed(hashed_name("default", "redis", "zone-a"))
    assert not looks_hashed("redis") and not looks_hashed("redis-v2")
