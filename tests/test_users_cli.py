"""``rrm-ui users add`` without a terminal, and with annotators only: clear words, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def users_add(db: str, name: str, *flags: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a script or a container runs it: no controlling terminal (a new session)."""
    return subprocess.run(
        [sys.executable, "-m", "rrm_ui", "users", "add", name, *flags, "--db", db],
        input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip


def test_without_a_terminal_it_says_how_to_give_the_password(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'u.db'}"
    proc = users_add(db, "bob")
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr and "EOFError" not in proc.stderr, proc.stderr
    assert "no terminal to ask for the password" in proc.stderr and "--password-stdin" in proc.stderr
    empty = users_add(db, "bob", "--password-stdin")
    assert empty.returncode == 2 and "stdin is empty" in empty.stderr and "Traceback" not in empty.stderr


def test_annotators_only_are_warned_that_nobody_is_admin(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'u.db'}"
    first = users_add(db, "ann", "--password-stdin", stdin="password-ann\n")
    assert first.returncode == 0, first.stderr
    assert "first account" in first.stdout
    assert "no account is an admin" in first.stderr and "owner 'local'" in first.stderr
    assert "rrm-ui users add NAME --admin" in first.stderr
    boss = users_add(db, "boss", "--admin", "--password-stdin", stdin="password-boss\n")
    assert boss.returncode == 0 and "no account is an admin" not in boss.stderr
    more = users_add(db, "ann2", "--password-stdin", stdin="password-ann2\n")
    assert more.returncode == 0 and "no account is an admin" not in more.stderr
