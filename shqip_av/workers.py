"""Worker processes that die with the process that started them.

A pool worker whose parent was killed (``kill -9``, the OOM killer) would otherwise live on,
holding hundreds of MB and writing into the dataset root while nobody collects its results.
``die_with_parent`` asks Linux to SIGKILL the worker when its parent exits (PR_SET_PDEATHSIG)
and, on any system, starts a daemon thread that exits the worker once its parent is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(poll_seconds: float = 1.0) -> None:
    """Call first thing in a worker process (a pool initializer)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass  # the watchdog below still works
    if os.getppid() != parent or parent == 1:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
