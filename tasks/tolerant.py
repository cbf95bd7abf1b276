"""Progress artifacts are for watching a render, never a reason to fail one."""

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("pytti")


def best_effort(what: str) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
    """Decorate a function that publishes ``what`` (an artifact, a contact sheet): if it raises, log one
    warning naming ``what`` and the error, and return ``None`` instead, so the render goes on.

    Example::

        @best_effort("progress artifact")
        def start_progress(run: RunRef) -> str: ...
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R | None]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - an artifact must never fail the render
                run_logger().warning(
                    "could not publish the %s (%s: %s); the render goes on", what, type(e).__name__, e
                )
                return None

        return wrapper

    return decorate
