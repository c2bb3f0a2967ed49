"""A watchdog for the processes a backend starts: they end when the app is killed.

vLLM runs its engine in child processes (``VLLM::EngineCore``, its workers, a resource
tracker). When the app exits normally it shuts them down; when it is killed (SIGKILL, the OOM
killer) nothing tells them, and they stay with their memory, on a GPU the memory the restarted
app needs to load the model again. :func:`guard` starts a small process, outside the app's
process group, that waits for the app to disappear and then kills those children.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

_WATCH = r"""
import json, os, signal, sys, time
import psutil

def alive(pid, created):
    try:
        return psutil.Process(pid).create_time() == created
    except psutil.Error:
        return False

parent, born, children = json.loads(sys.argv[1])
while alive(parent, born):
    time.sleep(1.0)
for pid, created in children:
    if alive(pid, created):  # the same process, not a later one with a reused pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def children() -> list[Any]:
    """This process's children and their descendants, now (``psutil.Process`` objects)."""
    import psutil

    return psutil.Process().children(recursive=True)


def guard(before: list[Any]) -> subprocess.Popen[bytes] | None:
    """Watch the children started since ``before`` (a :func:`children` list): killed when this process dies.

    Returns the watchdog (terminate it after shutting the children down normally), or None when no
    child was started.
    """
    import psutil

    me = psutil.Process()
    known = {p.pid for p in before}
    new = []
    for p in children():
        if p.pid not in known:
            try:
                new.append((p.pid, p.create_time()))
            except psutil.Error:
                pass
    if not new:
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _WATCH, json.dumps([me.pid, me.create_time(), new])],
        start_new_session=True,  # not in the app's process group: a kill of the group leaves it to clean up
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


__all__ = ["children", "guard"]
