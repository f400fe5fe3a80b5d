"""The web console: meshes, services, dataplanes and zones at a glance, under ``/gui``.

Server-rendered pages (Jinja2 templates, one stylesheet, one small script, all shipped
in the package) that `meshdns serve` adds to its API app with ``console_router``;
``handler_answers`` gives it the DNS server's own answers to show.
"""

from meshdns.console.dig import DnsAnswer, handler_answers
from meshdns.console.routes import console_router

__all__ = ["DnsAnswer", "console_router", "handler_answers"]
