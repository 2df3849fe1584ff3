"""Shared by the probes here: anonymous resident memory (MB), a peak poller, and glibc's malloc_trim.

Run the probes from the repository root, e.g. ``python notes/h13_memory/peak.py trim``.
"""
import ctypes
import gc
import threading
import time


def anon() -> int:
    """RssAnon of this process, MB."""
    return [int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("RssAnon")][0]


class Peak:
    """Polls anon() in a thread; ``reset()`` starts a new window, ``value`` is its maximum."""

    def __init__(self, every_s: float = 0.005):
        self.value, self.every_s = 0, every_s
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while True:
            self.value = max(self.value, anon())
            time.sleep(self.every_s)

    def reset(self) -> int:
        """Start a window; returns the level at its start."""
        self.value = 0
        return anon()


def trim() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
