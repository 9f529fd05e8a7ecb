"""Every call a benchmark makes is bounded, and one that overruns names its step.

* :func:`step` bounds a block of in-process work (pyHanko, the token, a verification) with
  a real-time alarm: after ``seconds`` the block is interrupted with :class:`StepOverran`
  (``overran: <step>: no answer within N s``). It works in the main thread only (Python
  delivers signals there) and interrupts Python code between bytecodes, which is where a
  CPU-bound loop spends its time.
* :func:`post` / :func:`get` are ``requests`` calls with a timeout whose expiry is turned
  into the same :class:`StepOverran`.

Benchmarks let :class:`StepOverran` end the run (exit status 1, the message last).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Default bound of one call, in seconds.
DEFAULT_SECONDS = 120.0


class StepOverran(RuntimeError):
    """A bounded step did not finish in time."""

    def __init__(self, step: str, seconds: float, detail: str = "no answer") -> None:
        super().__init__(f"overran: {step}: {detail} within {seconds:g} s")
        self.step = step
        self.seconds = seconds


@contextmanager
def step(name: str, seconds: float = DEFAULT_SECONDS) -> Iterator[None]:
    """Run the block, or raise :class:`StepOverran` naming ``name`` after ``seconds``.

    Outside the main thread the block runs unbounded (signals cannot reach it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def overran(signum: int, frame: Any) -> None:
        raise StepOverran(name, seconds)

    previous = signal.signal(signal.SIGALRM, overran)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call(client: Any, method: str, url: str, step_name: str,
         seconds: float = DEFAULT_SECONDS, **kwargs: Any) -> Any:
    """``client.<method>(url, timeout=seconds, ...)``; a timeout becomes
    :class:`StepOverran` naming ``step_name``."""
    import requests

    try:
        return getattr(client, method)(url, timeout=seconds, **kwargs)
    except requests.Timeout as exc:
        raise StepOverran(step_name, seconds) from exc


def post(client: Any, url: str, step_name: str, seconds: float = DEFAULT_SECONDS,
         **kwargs: Any) -> Any:
    return call(client, "post", url, step_name, seconds, **kwargs)


def get(client: Any, url: str, step_name: str, seconds: float = DEFAULT_SECONDS,
        **kwargs: Any) -> Any:
    return call(client, "get", url, step_name, seconds, **kwargs)


def post_plain(base_url: str, path: str, body: bytes, headers: dict[str, str],
               step_name: str, seconds: float = DEFAULT_SECONDS) -> tuple[int, bytes]:
    """``POST`` with the standard library's ``http.client``, one connection per call (the
    status and the body back), for benchmarks of a service's own HTTP path: ``requests``
    costs about 1 ms of its own per call in a process like a benchmark's (its environment
    and proxy look-ups, hooks, adapters), which is the client's time, not the service's. A
    timeout becomes :class:`StepOverran` naming ``step_name``."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port,
                                            timeout=seconds)
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except TimeoutError as exc:
        raise StepOverran(step_name, seconds) from exc
    finally:
        connection.close()
