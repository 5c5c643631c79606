"""CPU priority: the UI thread goes first whenever it has something to do.

On the CPU backend the worker thread and the BLAS pool it calls into keep every core busy; OpenBLAS's
pool threads also spin between calls. On a two-core machine the UI thread then waited for a core
about as long as it ran: a 12 ms plot repaint stalled the event loop for 25 ms and more. Lowering
the priority of the compute threads (nice 10) lets the scheduler run the UI thread at once when it
wakes up, while the worker still gets every cycle the UI leaves idle, so synthesis is no slower.

Linux lets each thread have its own nice value (os.setpriority with a thread id). The BLAS pool
was started when NumPy was imported, on the UI thread, and so inherited its priority: it is
lowered together with every other thread that exists when the worker starts (Qt's helpers sleep
almost always and lose nothing). Threads started later from the UI thread, such as the audio
callback thread, keep normal priority. Raising a nice value needs no privilege; it cannot be undone
by an ordinary user, which is fine for threads that only ever compute. Elsewhere, QThread's own
priority (honoured on Windows and macOS) is all there is.
"""

from __future__ import annotations

import os
import sys
import threading

COMPUTE_NICE = 10


def _supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def _renice(tid: int) -> None:
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < COMPUTE_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, COMPUTE_NICE)
    except OSError:   # the thread ended meanwhile, or a sandbox forbids it: priority is a nicety
        pass


def lower_other_threads() -> None:
    """Call on the UI thread: every other thread of the process now runs at compute priority."""
    if not _supported():
        return
    me = threading.get_native_id()
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return
    for tid in tids:
        if tid != me:
            _renice(tid)


def lower_this_thread() -> None:
    """Call on a compute thread started after `lower_other_threads` (it inherited the UI's)."""
    if _supported():
        _renice(threading.get_native_id())
