"""Child processes that die with their parent.

``kartka serve`` starts a worker; if serve itself is killed outright (SIGKILL, the OOM killer) nothing
of it runs to stop that worker, which would then live on beside the next start's. On Linux the kernel
can deliver a signal to a process when its parent dies (``PR_SET_PDEATHSIG``); elsewhere, and as a
second line, the child notices that its parent process id changed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Have ``sig`` sent to this process when ``parent`` exits; False if it has exited already.

    The kernel's notice is tied to the parent thread that started this process, so the parent must
    start its children from a thread that lives as long as they should (see kartka.supervisor).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    # The parent may have died before the call above; then no signal will come.
    return parent_alive(parent)


def parent_alive(parent: int) -> bool:
    return os.getppid() == parent
