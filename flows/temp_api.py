"""Prefect's temporary API for the ``pytti`` commands: started first, waited for patiently, stopped last.

Without ``PREFECT_API_URL`` Prefect runs its flows against a temporary ("ephemeral") API: a uvicorn
subprocess on SQLite that it starts at the first flow call and gives
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (20 s) to answer. On a 2-core machine it needs
~16 s idle and more under load, and it only starts once torch, open_clip and the models are imported.
So the commands that run flows start it themselves, at the very beginning (:func:`early_start`), in
the same way Prefect does (same command and environment), while this process imports and loads; then
:func:`ensure_ready` waits for it (a generous timeout unless the user set the variable, one retry with a
new process) and hands it to Prefect, which uses it as its own temporary server. If it still does not
answer, :class:`TemporaryApiError` says so in one line, naming the setting and how to use a running
server instead.

The server runs in its own session, so a Ctrl-C or SIGTERM sent to the terminal's process group
reaches only ``pytti``, which stops the render while the API can still record it; the server is stopped
at exit, after Prefect's own exit handlers (it is registered before Prefect is imported), and on Linux
the kernel stops it if ``pytti`` dies without cleaning up (``PR_SET_PDEATHSIG``).
"""

import atexit
import contextlib
import contextvars
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_S = 180
"""Seconds the temporary API may take to answer, per attempt, unless ``TIMEOUT_ENV`` says otherwise."""
ATTEMPTS = 2
API_COMMANDS = frozenset({"render", "demo", "resume", "fork", "batch"})
"""The ``pytti`` commands that run flows in this process (and so need an API)."""
LOG_NAME = "pytti-temporary-api.log"
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
_PR_SET_PDEATHSIG = 1

_EARLY: contextvars.ContextVar["Server | None"] = contextvars.ContextVar("pytti_temporary_api", default=None)


class TemporaryApiError(RuntimeError):
    """Prefect's temporary API did not answer, twice; the message is one line."""


def startup_timeout(environ: Mapping[str, str]) -> float:
    """Seconds per attempt: the user's ``TIMEOUT_ENV`` when it is a positive number, else the default."""
    try:
        value = float(environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return float(DEFAULT_TIMEOUT_S)
    return value if value > 0 else float(DEFAULT_TIMEOUT_S)


def prefect_home(environ: Mapping[str, str]) -> Path:
    """``$PREFECT_HOME`` (default ``~/.prefect``)."""
    return Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def configured_api_url(environ: Mapping[str, str]) -> str | None:
    """The API URL set in the environment or the active profile, read without importing Prefect.

    A quick check only (it ignores ``prefect.toml`` and ``.env``): :func:`ensure_ready` asks Prefect's
    own settings and stops a server started early that is not needed.
    """
    if environ.get("PREFECT_API_URL"):
        return environ["PREFECT_API_URL"]
    profiles = Path(environ.get("PREFECT_PROFILES_PATH") or prefect_home(environ) / "profiles.toml")
    try:
        data = tomllib.loads(profiles.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    active = environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    settings = data.get("profiles", {}).get(active, {})
    url = settings.get("PREFECT_API_URL") if isinstance(settings, dict) else None
    return str(url) if url else None


def failure_message(timeout: float, attempts: int, log: Path | None) -> str:
    """The one-line error when the temporary API never answered."""
    where = f"; its log: {log}" if log is not None else ""
    return (
        f"Prefect's temporary API did not answer within {timeout:g} s ({attempts} tries{where}). "
        f"Give it longer with {TIMEOUT_ENV}=600, or start a server once (`prefect server start`, in "
        "another terminal) and point pytti at it with PREFECT_API_URL=http://127.0.0.1:4200/api"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: deliver SIGTERM to this process when its parent dies (also after ``kill -9``)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Server:
    """One temporary API process on ``127.0.0.1:port``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path | None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def healthy(self, timeout: float = 2.0) -> bool:
        """True when ``/api/health`` answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=timeout) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def exit_code(self) -> int | None:
        """The process's exit code, or ``None`` while it runs."""
        return self.process.poll()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM its process group, SIGKILL after ``grace`` s; safe to call more than once."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _uvicorn_argv(port: int) -> list[str]:
    """Prefect's own command for its temporary server (``SubprocessASGIServer``), found without importing
    Prefect."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise TemporaryApiError("Prefect is not installed in this environment")
    app_dir = Path(spec.origin).resolve().parent.parent
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(app_dir),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def spawn_server(environ: Mapping[str, str] | None = None) -> Server:
    """Start the API as Prefect starts its temporary server, on a free port, in its own session.

    Its output goes to ``$PREFECT_HOME/pytti-temporary-api.log``; it is stopped at exit.
    """
    env = dict(os.environ if environ is None else environ)
    port = _free_port()
    home = prefect_home(env)
    log: Path | None = home / LOG_NAME
    out: IO[bytes] | int
    try:
        home.mkdir(parents=True, exist_ok=True)
        out = (home / LOG_NAME).open("wb")
    except OSError:
        log, out = None, subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            _uvicorn_argv(port),
            env={**env, **_SERVER_ENV},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    finally:
        if not isinstance(out, int):
            out.close()
    server = Server(port=port, process=process, log=log)
    atexit.register(server.stop)
    return server


def wait_ready(
    first: Server | None,
    spawn: Callable[[], Server],
    timeout: float,
    *,
    attempts: int = ATTEMPTS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Server:
    """Wait until a server answers; a server that exits or stays silent for ``timeout`` s is stopped
    and replaced by a new one from ``spawn``, up to ``attempts`` servers in all.

    Args:
        first: a server started earlier (its wait starts now), or ``None`` to spawn one.
        spawn: starts a new server.
        timeout: seconds each server may take to answer.

    Raises:
        TemporaryApiError: no server answered (one line).
    """
    server = first
    for _ in range(attempts):
        server = server or spawn()
        deadline = clock() + timeout
        while server.exit_code() is None and clock() < deadline:
            if server.healthy():
                return server
            sleep(0.1)
        server.stop()
        log, server = server.log, None
    raise TemporaryApiError(failure_message(timeout, attempts, log))


def _prefect_api_url() -> str | None:
    """The API URL in Prefect's effective settings (environment, profile, ``prefect.toml``, test harness)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _ephemeral_allowed() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().server.ephemeral.enabled)


def _hand_to_prefect(server: Server) -> None:
    """Make ``server`` Prefect's temporary server, which every client of this process then uses."""
    from prefect.server.api.server import SubprocessASGIServer

    instance = SubprocessASGIServer()  # the one Prefect's get_client() starts: no port given
    instance.port = server.port
    instance.server_process = server.process
    instance.running = True


def _running_in_prefect() -> bool:
    from prefect.server.api.server import SubprocessASGIServer

    instance = SubprocessASGIServer._instances.get(None)
    return bool(instance is not None and instance.running)


def ensure_ready(environ: MutableMapping[str, str] | None = None) -> Server | None:
    """Before the first flow: the API answers, or :class:`TemporaryApiError`.

    With a server configured (``PREFECT_API_URL``), a server started early is stopped and ``None``
    returned. Otherwise the server :func:`early_start` started (or a new one) is waited for and handed
    to Prefect.
    """
    env = os.environ if environ is None else environ
    server = _EARLY.get()
    if (
        _prefect_api_url() is not None
        or not _ephemeral_allowed()
        or (server is None and _running_in_prefect())
    ):
        if server is not None:
            server.stop()
            _EARLY.set(None)
        return None
    ready = wait_ready(server, lambda: spawn_server(env), startup_timeout(env))
    _EARLY.set(ready)
    _hand_to_prefect(ready)
    return ready


@contextlib.contextmanager
def early_start(
    command: str, environ: MutableMapping[str, str] | None = None, *, spawn: bool = True
) -> Iterator[Server | None]:
    """For a command in :data:`API_COMMANDS`: start the temporary API now, unless ``spawn`` is false
    (input known to be bad), a server is configured, or Prefect is already imported (then
    :func:`ensure_ready` decides later). Also makes ``TIMEOUT_ENV`` generous for Prefect itself unless
    the user set it.

    Yields:
        The server started, or ``None``.
    """
    env = os.environ if environ is None else environ
    server = None
    if command in API_COMMANDS:
        env.setdefault(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
        if spawn and "prefect" not in sys.modules and configured_api_url(env) is None:
            server = spawn_server(env)
            print(
                "pytti: starting Prefect's temporary API while torch and the models load ...",
                file=sys.stderr,
                flush=True,
            )
    token = _EARLY.set(server)
    try:
        yield server
    finally:
        _EARLY.reset(token)
