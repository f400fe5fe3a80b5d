"""The meshdns registry: resources, their storage, VIP allocation and the HTTP API.

This package never opens a DNS socket and never imports ``dnsserver``.
"""
