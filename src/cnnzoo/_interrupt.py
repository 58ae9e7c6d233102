"""Ctrl-C while the ``cnnzoo`` command is still importing exits 130 in one line (#13).

Imported first by ``cnnzoo/__init__.py``; it acts only when this process is the ``cnnzoo``
command (the console script or ``python -m cnnzoo``), never for a library user, and
:func:`cnnzoo.cli.main` hands SIGINT back to Python as soon as the imports are done.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

__all__ = ["restore_default_sigint"]


def _is_cli_start() -> bool:
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name in ("cnnzoo", "cnnzoo.exe"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and argv[i + 1 : i + 2] == ["cnnzoo"] for i, a in enumerate(argv))


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    # nothing has been written yet: leaving at once is safe, and no traceback can follow
    os.write(2, b"cnnzoo: interrupted\n")
    os._exit(130)


def restore_default_sigint() -> None:
    """Give SIGINT back to Python (KeyboardInterrupt) if the start-up handler holds it."""
    if signal.getsignal(signal.SIGINT) is _exit_interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if (
    _is_cli_start()
    and threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, _exit_interrupted)
