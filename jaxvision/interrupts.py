"""Ctrl-C and SIGTERM as requests: the training loop finishes its step, saves, then stops.

Python's default turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be (inside
a tf.data iterator, an orbax write), and SIGTERM kills at once. ``deferred_interrupts`` records the
signal instead; the loop polls ``requested`` between steps. A second Ctrl-C while the request is
pending raises KeyboardInterrupt at once, for a loop that no longer polls.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# The exit status of a process stopped by a signal, as shells report it: 128 + its number.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class InterruptRequest:
    """The first SIGINT or SIGTERM received while installed, or None."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, number: int, frame) -> None:
        del frame
        if self.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = number


@contextlib.contextmanager
def deferred_interrupts(enabled: bool = True) -> Iterator[InterruptRequest]:
    """Within the block, SIGINT and SIGTERM set ``request.signal`` instead of stopping the process.

    Outside the main thread (where Python cannot install handlers) or with ``enabled`` False, the
    request never fires and signals keep their usual effect.
    """
    request = InterruptRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request._handle) for number in EXIT_STATUS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


__all__ = ["EXIT_STATUS", "InterruptRequest", "deferred_interrupts"]
