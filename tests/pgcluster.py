"""A private PostgreSQL cluster owned by one test, which the test may stop and start.

The machine's shared Postgres serves every other test, so outage tests need a server of
their own: `initdb` into a temporary directory, `pg_ctl start` on a free port (socket in
that directory, TCP on 127.0.0.1 only), `stop()` and `start()` at will, `cleanup()` at
the end. Postgres refuses to run as root, so as root the cluster belongs to the
`postgres` OS user and every server command runs through `runuser -u postgres`; as any
other user it runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers import free_port

POSTGRES_OS_USER = "postgres"


class ClusterUnavailable(RuntimeError):
    """This machine cannot run a private Postgres cluster (the message says what is missing)."""


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb and pg_ctl, else where PATH has them."""
    versions = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            try:
                versions.append((float(candidate.parent.name), candidate))
            except ValueError:
                continue
    if versions:
        return max(versions)[1]
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    raise ClusterUnavailable("initdb and pg_ctl are not installed (apt-get install postgresql)")


def _server_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs as the cluster's owner, and that owner's uid and gid."""
    if os.geteuid() != 0:
        return [], None, None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ClusterUnavailable("running as root, but runuser is missing to drop to postgres")
    try:
        owner = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise ClusterUnavailable(
            f"running as root, but there is no {POSTGRES_OS_USER!r} OS user to run Postgres as"
        ) from None
    return [runuser, "-u", POSTGRES_OS_USER, "--"], owner.pw_uid, owner.pw_gid


class PostgresCluster:
    """One initdb'd cluster in a temporary directory, on a free port of 127.0.0.1."""

    def __init__(self, *, standby_of: PostgresCluster | None = None) -> None:
        """A new cluster; `standby_of`: a streaming standby of that running cluster, made
        from its base backup (promote() makes it a primary, as a failover does)."""
        self.bin_dir = postgres_bin_dir()
        self._as_owner, uid, gid = _server_user()
        self.directory = Path(tempfile.mkdtemp(prefix="meshdns-pg-"))
        if uid is not None and gid is not None:
            os.chown(self.directory, uid, gid)
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self.port = free_port()
        self.running = False
        self.settings: list[str] = []  # more `-c name=value` for the server
        if standby_of is None:
            self._initdb()
        else:
            self._run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(standby_of.port), "-U", "postgres"),
                *("-D", str(self.data_dir), "-R", "-X", "stream", "--no-sync"),
                "--checkpoint=fast",
            )

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        command = [*self._as_owner, str(self.bin_dir / tool), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.directory
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{self.server_log()}"
            )
        return result.stdout

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",  # a throwaway cluster: skip fsync, initdb takes a fraction of the time
        )

    def start(self, timeout: int = 30) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {setting}" for setting in self.settings)
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(timeout),
            "start",
            timeout=timeout + 10,
        )
        self.running = True

    def stop(self, mode: str = "fast", timeout: int = 30) -> None:
        """Stop the server: "fast" ends sessions cleanly, "immediate" is a crash."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(timeout),
            "stop",
            timeout=timeout + 10,
        )
        self.running = False

    def promote(self, timeout: int = 30) -> None:
        """Make a standby the primary (what an HA manager does when the primary is gone)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(timeout),
            "promote",
            timeout=timeout + 10,
        )

    def server_log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop the server if it runs and remove the whole directory."""
        try:
            if self.running or (self.data_dir / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
