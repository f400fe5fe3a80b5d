"""Dataplane agents: their liveness (heartbeats), the DNS records they follow, and the
API routes they speak."""
