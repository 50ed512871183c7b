"""Ctrl-C (SIGINT) and SIGTERM, never lost and never in the middle of a step that must finish.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; when that is inside a
garbage-collector callback (JAX registers one) or a ``__del__``, it prints "Exception ignored"
and carries on, and the run went on to its end as if no key had been pressed (1 run in 24 of
``tests/test_faults.py``'s repeated Ctrl-C). Inside :func:`handled`, every signal is also
recorded, and :func:`check` raises for a recorded one where the program can stop cleanly.
Inside :func:`deferred` a signal is only recorded: the training loop looks at the record between
chunks (and writes a checkpoint before it stops), and a set of output files is renamed into
place whole; leaving the block raises for a signal that arrived in it.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received = threading.Event()
_state = {"handled": 0, "deferred": 0}


def _handler(signum, frame) -> None:
    _received.set()
    if not _state["deferred"]:
        raise KeyboardInterrupt


def _unraisable(report) -> None:
    """Python's "Exception ignored in ..." report, without the KeyboardInterrupts it dropped:
    they were recorded, and :func:`check` raises them where they can be handled."""
    if not (isinstance(report.exc_value, KeyboardInterrupt) and _received.is_set()):
        _state["unraisablehook"](report)


@contextmanager
def _installed(handler) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM in the block (main thread only), the previous ones after."""
    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextmanager
def handled() -> Iterator[None]:
    """Record SIGINT and SIGTERM (and raise ``KeyboardInterrupt`` for them, outside
    :func:`deferred`) for the block; the previous handlers come back after it, and leaving the
    outermost block forgets what was recorded. Only the main thread can handle signals:
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _state["handled"]:
        _state["unraisablehook"], sys.unraisablehook = sys.unraisablehook, _unraisable
    _state["handled"] += 1
    try:
        with _installed(_handler):
            yield
    finally:  # the handlers are back before the record is forgotten
        _state["handled"] -= 1
        if not _state["handled"]:
            sys.unraisablehook = _state.pop("unraisablehook")
            _received.clear()


def _record(signum, frame) -> None:
    _received.set()


@contextmanager
def recorded() -> Iterator[None]:
    """Only record SIGINT and SIGTERM in the block, raising nothing, and keep the record after
    it: for a program's imports, which an exception must not cut short (a traceback, or a
    half-initialised jaxlib), so that its ``main`` (inside :func:`handled`) stops on it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _installed(_record):
        yield


@contextmanager
def deferred() -> Iterator[threading.Event]:
    """Signals in the block are only recorded (the yielded event is set); when the block ends
    normally, a recorded one raises ``KeyboardInterrupt``."""
    with handled():
        _state["deferred"] += 1
        try:
            yield _received
        finally:
            _state["deferred"] -= 1
        check()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal was recorded (one whose exception Python may
    have dropped)."""
    if _received.is_set():
        raise KeyboardInterrupt
