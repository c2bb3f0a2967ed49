"""The watchdog ends a backend's child processes when the app is killed (rrm_ui/backends/orphans.py).

A real parent process starts a child the way vLLM starts its engine, guards it, and is SIGKILLed;
the child must end. The end-to-end case with vLLM itself is in test_app_kill.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

PARENT = r"""
import subprocess, sys, time
from rrm_ui.backends import orphans
before = orphans.children()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
watchdog = orphans.guard(before)
print(child.pid, watchdog.pid, flush=True)
time.sleep(600)
"""


def test_children_end_when_the_app_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child_pid, watchdog_pid = map(int, parent.stdout.readline().split())
        child, watchdog = psutil.Process(child_pid), psutil.Process(watchdog_pid)
        assert child.is_running() and watchdog.is_running()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        gone, alive = psutil.wait_procs([child, watchdog], timeout=15)
        assert not alive, [p.pid for p in alive]
    finally:
        if parent.poll() is None:
            parent.kill()


def test_guard_without_new_children_starts_nothing() -> None:
    from rrm_ui.backends import orphans

    assert orphans.guard(orphans.children()) is None
