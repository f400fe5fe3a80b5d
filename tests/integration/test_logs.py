"""`--log-format json`: every line a JSON object; the startup line has its facts as fields."""

from __future__ import annotations

import json

import pytest

from meshdns import __version__

pytestmark = pytest.mark.integration


def test_json_logs_and_the_startup_line(start_meshdns):
    server = start_meshdns("", "--log-format", "json")
    server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert lines, server.log()
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    startup = next(line for line in lines if line["message"].startswith("meshdns "))
    assert startup["version"] == __version__
    assert startup["mode"] == "standalone"
    assert startup["database"] == "sqlite+aiosqlite:///meshdns.db"
    assert startup["dns"] == f"127.0.0.1:{server.dns_port}"
    assert startup["api"] == f"http://127.0.0.1:{server.api_port}"
    assert startup["python"].count(".") == 2
    assert any(line["message"] == "shutting down" for line in lines)


def test_text_logs_say_the_same_on_one_line(start_meshdns):
    server = start_meshdns("")
    server.stop()
    startup = next(line for line in server.log().splitlines() if " meshdns " in line)
    assert f"meshdns {__version__} (python " in startup
    assert f"dns=127.0.0.1:{server.dns_port}" in startup
    assert f"api=http://127.0.0.1:{server.api_port}" in startup
    assert "mode=standalone" in startup and "database=sqlite" in startup
