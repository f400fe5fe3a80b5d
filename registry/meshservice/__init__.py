"""Kuma's current service model: MeshService and its kin, and the hostnames
HostnameGenerators give them (templates, generation, collisions)."""
