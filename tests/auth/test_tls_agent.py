"""Real processes: `serve` over HTTPS with --no-loopback-admin, tokens from the CLI, and
`dp run` registering its dataplane over HTTPS with a dataplane token."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import trustme

from tests.factories import dataplane
from tests.helpers import LOOPBACK_SINK, MESHDNS, Meshdns, dig, eventually, free_port, stop_process

pytestmark = pytest.mark.integration


def certificates(directory: Path) -> tuple[str, str, str]:
    """A private CA's certificate, and a server certificate for 127.0.0.1 and its key."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = (directory / name for name in ("ca.pem", "api.pem", "api.key"))
    ca.cert_pem.write_to_path(str(ca_path))
    for index, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(cert_path), append=index > 0)
    server.private_key_pem.write_to_path(str(key_path))
    return str(ca_path), str(cert_path), str(key_path)


def meshdns(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MESHDNS, *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def start_https(server: Meshdns, ca: str, timeout: float = 20) -> None:
    """`server.start()` for an https API: readiness over TLS, verified with the test's CA."""
    server.log_path = server.cwd / f"meshdns-{server.api_port}.log"
    env = {**os.environ, "MESHDNS_UPSTREAM": LOOPBACK_SINK}
    with server.log_path.open("a") as log:
        server.process = subprocess.Popen(
            server.command(), cwd=server.cwd, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    verify = ssl.create_default_context(cafile=ca)

    def ready() -> bool:
        assert server.process is not None
        if server.process.poll() is not None:
            raise AssertionError(f"meshdns exited early:\n{server.log()}")
        try:
            url = f"https://127.0.0.1:{server.api_port}/readyz"
            return httpx.get(url, verify=verify, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, "meshdns ready over https", timeout)


def write_dataplane(path: Path, name: str, service: str) -> str:
    path.write_text(json.dumps(dataplane(name, "10.0.0.7", service)))
    return str(path)


def test_agent_registers_over_https_with_a_dataplane_token(postgres_database_url, tmp_path):
    ca, cert, key = certificates(tmp_path)
    server = Meshdns(
        database_url=postgres_database_url,
        cwd=tmp_path,
        extra=(
            *("--api-tls-cert", cert, "--api-tls-key", key, "--no-loopback-admin"),
            *("--heartbeat-interval", "0.5"),
        ),
    )
    agents: list[subprocess.Popen[str]] = []
    start_https(server, ca)
    try:
        api = f"https://127.0.0.1:{server.api_port}"
        verify = ssl.create_default_context(cafile=ca)
        # Loopback is no admin here: no token, no answer; and no plain HTTP on the port.
        assert httpx.get(f"{api}/meshes", verify=verify).status_code == 401
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.api_port}/meshes", timeout=2)

        def token(*args: str) -> Path:
            made = meshdns(
                "token", "generate", *args, "--database-url", postgres_database_url, cwd=tmp_path
            )
            assert made.returncode == 0, made.stderr
            assert made.stdout.count(".") == 2 and "token id" in made.stderr
            path = tmp_path / f"token-{len(list(tmp_path.glob('token-*')))}"
            path.write_text(made.stdout)
            return path

        admin = token("--type", "admin")
        web = token("--type", "dataplane", "--service", "web", "--valid-for", "1h")

        dns_port = free_port()
        agent_command = [MESHDNS, "dp", "run", "--cp", api, "--token-file", str(web)]
        agent_command += ["--ca-cert", ca, "--upstream", LOOPBACK_SINK]
        log_path = tmp_path / "agent-web.log"
        with log_path.open("w") as log:
            agents.append(
                subprocess.Popen(
                    agent_command
                    + ["--dataplane-file", write_dataplane(tmp_path / "web.json", "web-1", "web")]
                    + ["--dns-port", str(dns_port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )

        def agent_dns_up() -> bool:
            if agents[0].poll() is not None:
                raise AssertionError(f"agent exited:\n{log_path.read_text()}")
            return "status: NOERROR" in dig(dns_port, "mesh.", "SOA")

        eventually(agent_dns_up, "the agent's DNS up")
        assert "10.0.0.7" in dig(dns_port, "+short", "web.endpoints.mesh")

        # Registered, and online: seen through the API with the admin token over HTTPS.
        listed = meshdns(
            "get",
            "dataplanes",
            "--api",
            api,
            "--token-file",
            str(admin),
            "--ca-cert",
            ca,
            cwd=tmp_path,
        )
        assert listed.returncode == 0, listed.stderr
        assert any(row.split()[1:3] == ["web-1", "Online"] for row in listed.stdout.splitlines())
        refused = meshdns("get", "dataplanes", "--api", api, "--ca-cert", ca, cwd=tmp_path)
        assert refused.returncode == 1 and "Unauthorized" in refused.stderr

        # The web token does not let an agent register a db dataplane: it exits, saying why.
        db = subprocess.run(
            agent_command
            + ["--dataplane-file", write_dataplane(tmp_path / "db.json", "db-1", "db")]
            + ["--dns-port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert db.returncode == 1
        assert 'may not register an inbound of service "db"' in db.stderr, db.stderr

        # Revoked (by the token itself): the agent's heartbeats are refused from then on.
        revoked = meshdns(
            "token",
            "revoke",
            web.read_text().strip(),
            "--database-url",
            postgres_database_url,
            cwd=tmp_path,
        )
        assert revoked.returncode == 0 and "revoked token" in revoked.stdout
        eventually(
            lambda: "refused the heartbeat request (401" in log_path.read_text(),
            "the agent's heartbeats refused",
        )
    finally:
        for agent in agents:
            stop_process(agent)
        server.stop()
