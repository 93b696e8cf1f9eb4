"""A real PostgreSQL server for tests and benches: Debian's binaries, a temp data directory, a
free port on 127.0.0.1, password authentication over TCP, stopped and removed at the end.

initdb refuses to run as root, so under root (CI) the server runs as an unprivileged system
user (`postgres` from the Debian package, or `gemfinder-pg`, created when missing) through
`runuser`. Without the binaries `find_bin` returns None and callers skip, saying so
(tests/conftest.py), unless GEMFINDER_REQUIRE_POSTGRES=1 (set by .ci/run).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "gemfinder"
PASSWORD = "s3cret-Pw_for-tests"  # tests check it never shows in errors or logs
MISSING = (
    "PostgreSQL not installed (no initdb in /usr/lib/postgresql/*/bin, nor PG_BIN): install the "
    "Debian package postgresql (scripts/install.sh does)"
)


def find_bin() -> Path | None:
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    return next((Path(c) for c in candidates if (Path(c) / "initdb").exists()), None)


def _version(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """None when not root (run as ourselves); else an unprivileged user, created if missing."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "gemfinder-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "gemfinder-pg"],
        check=True,
    )
    return "gemfinder-pg"


class PostgresServer:
    def __init__(self, bin_dir: Path, *, fsync: bool = False) -> None:
        self.bin = bin_dir
        self.user = _server_user()
        # Under root, in /tmp: the server user must reach it (TMPDIR may be root's own).
        self.root = Path(
            tempfile.mkdtemp(prefix="gemfinder-pg-", dir="/tmp" if self.user else None)
        )
        self.data = self.root / "data"
        self.port = _free_port()
        self._count = 0
        self.root.chmod(0o755)  # the unprivileged server user writes here
        if self.user:
            shutil.chown(self.root, self.user)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run(
            "initdb", "-D", self.data, "-U", SUPERUSER, "--pwfile", pwfile, "-E", "UTF8",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            f" -c fsync={'on' if fsync else 'off'} -c max_connections=200"
        )
        self._run("pg_ctl", "start", "-w", "-D", self.data, "-l", self.root / "log", "-o", options)

    def _run(self, tool: str, *args) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *map(str, args)]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.root)

    def url(self, dbname: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the local socket; returns psql's unaligned output."""
        out = self._run(
            "psql", "-h", self.root, "-p", self.port, "-U", SUPERUSER, "-d", dbname,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        )  # fmt: skip
        return out.stdout.strip()

    def new_database(self, prefix: str = "t") -> str:
        """The URL of a new empty database."""
        self._count += 1
        name = f"{prefix}_{self._count}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if not self.root.exists():
            return  # stopped already
        try:
            self._run("pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
