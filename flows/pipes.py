"""Keep a render alive when whoever reads its output goes away.

A flow run started by a process worker writes its log to a pipe the worker reads. When the worker is
restarted, that pipe's reader is gone: the next write fails with ``BrokenPipeError``, and the console
library Prefect logs through (rich) answers that with ``SystemExit(1)``, so the render died within a
second as "Crash detected!". The same happens to ``pytti render … | head`` or a render in an ssh
session that was closed.

:func:`keep_output_alive` puts a relay between the process and such a pipe: file descriptors 1 and 2
then point at pipes this process owns, and a thread copies what arrives to the real destination. When
the destination goes away, the relay keeps reading and drops the bytes, so no writer (Python, rich, C
code, a child process) ever sees a broken pipe. The run's log still reaches the Prefect server (it is
sent through the API, not the pipe) and the run's files. Terminals and regular files are left alone.
"""

import atexit
import os
import stat
import sys
import threading

RELAY_THREAD_PREFIX = "pytti-output-relay-"
CHUNK = 65536


def _needs_relay(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _relay(source: int, target: int) -> None:
    """Copy ``source`` to ``target`` until EOF; once ``target`` fails, keep draining ``source``."""
    alive = True
    while True:
        try:
            data = os.read(source, CHUNK)
        except InterruptedError:
            continue
        if not data:
            break
        if alive:
            try:
                _write_all(target, data)
            except OSError:  # EPIPE, ECONNRESET, EIO …: the reader is gone; nobody will read again
                alive = False
    os.close(source)
    os.close(target)


def _install(fd: int) -> threading.Thread:
    target = os.dup(fd)  # the real destination (not inherited by children)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)  # fd 1/2 now write into our pipe, whose reader never goes away
    os.close(write_end)
    thread = threading.Thread(
        target=_relay, args=(read_end, target), name=f"{RELAY_THREAD_PREFIX}{fd}", daemon=True
    )
    thread.start()
    return thread


def _finish(relays: dict[int, threading.Thread]) -> None:
    """At exit: flush, give fds 1/2 back (to /dev/null), and let the relays deliver what is left."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in relays:
        os.dup2(devnull, fd)  # our write end closes here; the relay then reads to EOF
    os.close(devnull)
    for thread in relays.values():
        thread.join(timeout=2.0)  # children that still hold the pipe (a server being stopped) may delay EOF


def keep_output_alive() -> list[int]:
    """Relay stdout and stderr when they are pipes or sockets, so a vanished reader never kills the
    process. Safe to call more than once (a relay already running is kept).

    Returns:
        The file descriptors relayed by this call.
    """
    running = {t.name for t in threading.enumerate()}
    relays = {
        fd: _install(fd) for fd in (1, 2) if f"{RELAY_THREAD_PREFIX}{fd}" not in running and _needs_relay(fd)
    }
    if relays:
        atexit.register(_finish, relays)
    return sorted(relays)
