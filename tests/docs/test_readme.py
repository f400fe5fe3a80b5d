"""The README's five-minute tour, run as a newcomer pastes it, and the docs' links.

The tour runs in a copy of the repository's files (what a clone would hold), with the
copy's `.venv` made of links to the one running these tests, so nothing is installed
and nothing outside the copy is written. Its two terminals are two bash processes: the
first block is the first terminal (the server, stopped with Ctrl-C's SIGINT at the
end), the other blocks run one after the other in the second. The README's ports are
replaced by free ones, since other tests may be using them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import IN_CI, LOOPBACK_SINK, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TOUR_HEADING = "## Five-minute tour"
# docs/decisions.md is the project's record of decisions, kept by hand; its code paths
# name modules as they were when each decision was taken.
CHECKED_PAGES = [README, *sorted(p for p in DOCS.glob("*.md") if p.name != "decisions.md")]
ALL_PAGES = [README, *sorted(DOCS.glob("*.md"))]

DNS_PORT, API_PORT, RESOLVER_PORT = 5653, 5681, 5354
VIPS = ipaddress.ip_network("240.0.0.0/4")
STEP = "@@tour-step "

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
# Files of this repository named in prose or code: tests, scripts, examples.
REPO_PATH = re.compile(r"(?<![\w/.-])((?:tests|scripts|examples|\.ci)/[\w./-]*)(?:::(\w+))?")


def tour_section() -> str:
    text = README.read_text()
    start = text.index(TOUR_HEADING + "\n")
    end = text.find("\n## ", start + len(TOUR_HEADING))
    return text[start : end if end != -1 else len(text)]


def tour_blocks() -> list[tuple[str, str]]:
    """The tour's fenced blocks in order: ("sh", commands) or ("text", shown output)."""
    return [(lang, body) for lang, body in FENCE.findall(tour_section())]


def on_free_ports(text: str, ports: dict[int, int]) -> str:
    for default, port in ports.items():
        text = re.sub(rf"(?<!\d){default}(?!\d)", str(port), text)
    return text


def squeeze(line: str) -> str:
    return " ".join(line.split())


# -- the tour ---------------------------------------------------------------------------


def copy_of_the_repository(target: Path) -> None:
    """The files a clone would hold (tracked, or new and not ignored), as they are now."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot list the repository's files with git: {error}")
    for name in filter(None, listed.split(b"\0")):
        relative = os.fsdecode(name)
        source = ROOT / relative
        if not (source.is_file() or source.is_symlink()):
            continue  # deleted in the working tree
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination, follow_symlinks=False)


def borrowed_venv(target: Path) -> None:
    """A `.venv` whose contents link to this interpreter's, with install stamps of its own.

    The scripts reinstall when their stamp is older than pyproject.toml; fresh stamps
    here keep them from installing anything, into this copy or into the real `.venv`.
    """
    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").is_file():
        pytest.skip("the tests do not run in a virtualenv to lend the tour")
    own = target / ".venv"
    own.mkdir()
    for entry in venv.iterdir():
        if not entry.name.startswith(".installed"):
            (own / entry.name).symlink_to(entry)
    (own / ".installed").touch()


def newcomer_environment(home: Path, ports: dict[int, int]) -> dict[str, str]:
    """A shell's environment without meshdns on PATH or MESHDNS_* set, on our ports."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MESHDNS_") and name not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    path = [
        entry
        for entry in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if entry and not (Path(entry) / "meshdns").exists()
    ]
    env["PATH"] = os.pathsep.join([*path, "/usr/sbin", "/sbin"])
    env["HOME"] = str(home)  # no ~/.digrc or ~/.curlrc of the machine's user
    env["MESHDNS_DNS_PORT"] = str(ports[DNS_PORT])
    env["MESHDNS_API_PORT"] = str(ports[API_PORT])
    env["MESHDNS_API"] = f"http://127.0.0.1:{ports[API_PORT]}"
    # Names outside the zone never leave loopback (the tour asks none).
    env["MESHDNS_UPSTREAM"] = LOOPBACK_SINK
    return env


def require(tools: list[str], env: dict[str, str]) -> None:
    missing = [tool for tool in tools if shutil.which(tool, path=env["PATH"]) is None]
    if missing:
        message = f"the tour needs {', '.join(missing)} (scripts/test installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def stop_group(process: subprocess.Popen[bytes], sig: int, wait: float) -> bool:
    """Send ``sig`` to the process's group (as a terminal does); True once it exits."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            return False
    return True


def stop_leftover_dnsmasq(clone: Path, port: int) -> None:
    """A dnsmasq the tour started and did not stop (a step failed after starting it)."""
    pid_file = clone / "dnsmasq.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return
    if "dnsmasq" in command and f"--port={port}" in command:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "meshdns"
    target.mkdir()
    copy_of_the_repository(target)
    borrowed_venv(target)
    yield target


@pytest.mark.integration
def test_the_five_minute_tour_runs_as_written(clone: Path, tmp_path: Path) -> None:
    blocks = tour_blocks()
    commands = [body for lang, body in blocks if lang == "sh"]
    assert len(commands) >= 2, f"the tour's ```sh blocks: {commands}"
    assert commands[0].strip() == "./scripts/serve", "the first terminal runs the server"
    ports = {DNS_PORT: free_port(), API_PORT: free_port(), RESOLVER_PORT: free_port()}
    home = tmp_path / "home"
    home.mkdir()
    env = newcomer_environment(home, ports)
    require(["curl", "dig", "dnsmasq"], env)

    second_terminal = "".join(
        f"echo '{STEP}{index}'\n{on_free_ports(block, ports)}"
        for index, block in enumerate(commands[1:], start=1)
    )
    server_log = tmp_path / "first-terminal.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            ["bash", "-c", on_free_ports(commands[0], ports)],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tour_output = tmp_path / "second-terminal.log"
    try:
        # Pasted at once, as a newcomer would: the tour's own wait must cover start-up.
        with tour_output.open("wb") as out:
            tour = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", second_terminal],
                cwd=clone,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while tour.poll() is None and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        stop_group(tour, signal.SIGKILL, 5)
        output = tour_output.read_text()
        context = f"second terminal:\n{output}\nfirst terminal:\n{server_log.read_text()}"
        assert server.poll() is None, f"the server stopped during the tour\n{context}"
        assert tour.returncode == 0, f"a tour step failed ({tour.returncode})\n{context}"

        steps = step_outputs(output)
        check_what_the_tour_shows(steps, context)
        check_the_readme_shows_real_output(blocks, steps, context)
        check_the_console(ports[API_PORT])
        assert not (clone / "dnsmasq.pid").exists(), "the tour leaves dnsmasq running"

        # Ctrl-C in the first terminal.
        assert stop_group(server, signal.SIGINT, 20), "the server did not stop on Ctrl-C"
        first_terminal = server_log.read_text()
        assert "Traceback" not in first_terminal, first_terminal
    finally:
        stop_group(server, signal.SIGKILL, 10)
        stop_leftover_dnsmasq(clone, ports[RESOLVER_PORT])


def step_outputs(output: str) -> dict[int, list[str]]:
    """The lines each ```sh block of the second terminal printed, by block number."""
    steps: dict[int, list[str]] = {}
    current = 0
    for line in output.splitlines():
        if line.startswith(STEP):
            current = int(line[len(STEP) :])
            steps[current] = []
        elif line.strip():
            steps.setdefault(current, []).append(line)
    return steps


def check_what_the_tour_shows(steps: dict[int, list[str]], context: str) -> None:
    lines = [line for step in sorted(steps) for line in steps[step]]
    for name in ("backend-1", "backend-2", "web-1"):
        expected = f'Resource type="Dataplane" mesh="default" name="{name}" Created'
        assert expected in lines, f"apply did not print {expected!r}\n{context}"

    answers = [re.fullmatch(r"backend\.mesh\.\s+\d+\s+IN\s+A\s+(\S+)", line) for line in lines]
    vips = [match.group(1) for match in answers if match]
    assert len(vips) == 1, f"dig's answer for backend.mesh\n{context}"
    backend_vip = ipaddress.ip_address(vips[0])
    assert backend_vip in VIPS, context
    assert {"127.0.10.1", "127.0.10.2"} <= set(lines), f"backend's endpoints\n{context}"

    resolver_step = steps.get(dnsmasq_step_number(), [])
    web_vips = [line for line in resolver_step if re.fullmatch(r"[\d.]+", line)]
    assert len(web_vips) == 1, f"web.mesh through dnsmasq\n{context}"
    assert ipaddress.ip_address(web_vips[0]) in VIPS, context

    services = {
        squeeze(line).split()[1]: squeeze(line).split()[2]
        for line in lines
        if line.startswith("default ")
    }
    assert services == {"backend": str(backend_vip), "web": web_vips[0]}, context


def dnsmasq_step_number() -> int:
    """The number of the second terminal's block that puts dnsmasq in front."""
    commands = [body for lang, body in tour_blocks() if lang == "sh"]
    numbers = [index for index, body in enumerate(commands) if body.startswith("dnsmasq")]
    assert len(numbers) == 1, "one ```sh block of the tour starts dnsmasq"
    return numbers[0]


def check_the_readme_shows_real_output(
    blocks: list[tuple[str, str]], steps: dict[int, list[str]], context: str
) -> None:
    """Each ```text block shows lines the ```sh block before it printed (any order)."""
    command_number = -1
    for lang, body in blocks:
        if lang == "sh":
            command_number += 1
            continue
        printed = {squeeze(line) for line in steps.get(command_number, [])}
        for line in filter(None, map(squeeze, body.splitlines())):
            assert line in printed, f"the README shows {line!r}; the tour printed:\n{context}"


def check_the_console(api_port: int) -> None:
    urls = re.findall(r"<(http://127\.0\.0\.1:\d+/gui)>", tour_section())
    assert urls, "the tour names the console's address"
    for url in urls:
        answer = httpx.get(on_free_ports(url, {API_PORT: api_port}), follow_redirects=True)
        assert answer.status_code == 200 and "meshdns" in answer.text, answer.text[:500]


# -- the pages --------------------------------------------------------------------------


def without_code(text: str) -> str:
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slugs(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file_of_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"^[a-zA-Z][\w+.-]*:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in slugs(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, broken


@pytest.mark.parametrize("page", CHECKED_PAGES, ids=lambda page: page.name)
def test_every_test_and_script_named_exists(page: Path) -> None:
    missing = []
    for name, function in REPO_PATH.findall(page.read_text()):
        name = name.rstrip(".,")
        path = ROOT / name
        if not path.exists():
            missing.append(name)
        elif function and not re.search(rf"def {function}\b", path.read_text()):
            missing.append(f"{name}::{function}")
    assert not missing, missing


def test_the_readme_links_every_docs_page_and_stays_short() -> None:
    text = README.read_text()
    linked = {target.partition("#")[0] for target in LINK.findall(without_code(text))}
    unlinked = [page.name for page in DOCS.glob("*.md") if f"docs/{page.name}" not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"
    assert len(text.splitlines()) < 250


@pytest.mark.parametrize("page", CHECKED_PAGES, ids=lambda page: page.name)
def test_no_page_names_a_contract_users_do_not_have(page: Path) -> None:
    assert "DESIGN.md" not in page.read_text()
