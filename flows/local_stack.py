"""A local Prefect stack for tests and benchmarks: ``prefect server``, work pools, workers, all by PID.

Everything listens on 127.0.0.1 only, lives under its own ``PREFECT_HOME``, and is stopped by
process group (SIGTERM, then SIGKILL): a ProcessWorker's SIGTERM handler re-sends SIGINT to itself,
which a worker started from a script with ``nohup … &`` ignores.

Example::

    with LocalStack(tmp_path / "prefect") as stack:
        stack.prefect("work-pool", "create", "pytti-gpu", "--type", "process")
        stack.start_worker("pytti-gpu", limit=1)
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc; empty where /proc is missing)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStack:
    """A ``prefect server`` on a free loopback port plus the workers started through it.

    Args:
        home: the ``PREFECT_HOME`` (database, logs of the processes started here).
        port: the API port (default: a free one).
        env: extra environment for every process started here.
        startup_timeout: seconds the server may take to answer (minutes on a busy 2-core machine).
    """

    def __init__(
        self,
        home: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120,
    ) -> None:
        self.startup_timeout = startup_timeout
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("PREFECT_PROFILE", None)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.bin = Path(sys.executable).parent

    def __enter__(self) -> "LocalStack":
        self.start_server(self.startup_timeout)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own process group, logging to ``HOME/<name>.log``; remembered for stop()."""
        log = (self.home / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.processes.append(proc)
        return proc

    def start_server(self, timeout: float = 120) -> None:
        """Start ``prefect server start`` on 127.0.0.1 and wait until ``/api/health`` answers."""
        argv = [str(self.bin / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        server = self.spawn("server", argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited ({server.returncode}); see {self.home}/server.log")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server not healthy after {timeout} s; see {self.home}/server.log")

    def prefect(self, *args: str, timeout: float = 120) -> str:
        """Run ``prefect ARGS`` against this server from the repository root; returns its output."""
        done = subprocess.run(
            [str(self.bin / "prefect"), "--no-prompt", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def start_worker(
        self, pool: str, *, limit: int = 1, name: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``prefect worker start --pool POOL --limit N``; its flow runs inherit ``env``."""
        name = name or f"worker-{pool}-{len(self.processes)}"
        argv = [
            str(self.bin / "prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--limit",
            str(limit),
            "--name",
            name,
        ]
        return self.spawn(name, argv, env)

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """One REST call, as the UI makes it."""
        return httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]

    def kill(self, proc: subprocess.Popen[bytes], grace: float = 10) -> None:
        """Stop one process, its group and its descendants: SIGTERM, then SIGKILL after ``grace`` s."""
        pids = [proc.pid, *_children(proc.pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    if pid == proc.pid:
                        os.killpg(pid, sig)  # its own group (start_new_session): the leader and children
                    else:
                        os.kill(pid, sig)  # descendants that started sessions of their own
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_alive(p) for p in pids if p != proc.pid):
                time.sleep(0.2)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue
            if not any(_alive(p) for p in pids if p != proc.pid):
                return

    def stop(self) -> None:
        """Stop every process started here, newest first (workers before the server)."""
        while self.processes:
            self.kill(self.processes.pop())
