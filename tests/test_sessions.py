"""Sessions end when an account's password changes or it is removed, and failed logins slow down:
the real app (``python app.py``, no model needed) and the real ``rrm-ui users`` commands, over HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from rrm_ui.services.accounts import LoginThrottle
from tests.conftest import ROOT
from tests.test_e2e_browser import App

pytestmark = pytest.mark.slow
FREE = LoginThrottle().free  # failed tries of a name before the app slows them down
FREE_PER_ADDRESS = LoginThrottle().free_per_address


def users(db: str, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rrm_ui", "users", *args, "--db", db]
    if password is not None:
        command.append("--password-stdin")
    return subprocess.run(command, input=(password or "") + "\n", cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("sessions")
    db = f"sqlite:///{tmp / 'app.db'}"
    for name in ("boss", "ann", "cat"):
        extra = ("--admin",) if name == "boss" else ()
        proc = users(db, "add", name, *extra, password=f"{name}-password-1")
        assert proc.returncode == 0, proc.stderr
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a
    a.stop()


def login(app: App, name: str, password: str) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=app.url, timeout=30, follow_redirects=False)
    return client, client.post("/login", data={"username": name, "password": password})


def test_a_new_password_or_a_removal_ends_the_open_sessions_at_once(app: App) -> None:
    first, r1 = login(app, "ann", "ann-password-1")
    second, r2 = login(app, "ann", "ann-password-1")  # another browser
    other, r3 = login(app, "cat", "cat-password-1")
    assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 200)
    assert first.get("/config").status_code == second.get("/config").status_code == 200

    proc = users(app.url_db, "reset-password", "ann", password="ann-password-2")
    assert proc.returncode == 0 and "its open sessions end" in proc.stdout, proc.stderr
    assert first.get("/config").status_code == 401  # no restart, no wait
    assert second.get("/gradio_api/info").status_code == 401
    assert first.get("/").status_code == 200 and '"auth_required":true' in first.get("/").text  # the login page
    assert other.get("/config").status_code == 200  # someone else's session goes on
    assert login(app, "ann", "ann-password-1")[1].status_code == 400
    third, r4 = login(app, "ann", "ann-password-2")
    assert r4.status_code == 200 and third.get("/config").status_code == 200

    proc = users(app.url_db, "remove", "ann")
    assert proc.returncode == 0 and "removed the login of 'ann'" in proc.stdout, proc.stderr
    assert third.get("/config").status_code == 401
    assert login(app, "ann", "ann-password-2")[1].status_code == 400
    assert users(app.url_db, "remove", "ann").returncode == 2  # nothing left to remove
    assert users(app.url_db, "reset-password", "nobody", password="whatever-pass").returncode == 2
    for c in (first, second, other, third):
        c.close()


def test_failed_logins_are_throttled_per_name_and_per_address(app: App) -> None:
    for _ in range(FREE):
        assert login(app, "boss", "wrong-password")[1].status_code == 400
    locked = login(app, "boss", "boss-password-1")[1]  # even the right password waits
    assert locked.status_code == 429, locked.text
    assert "too many failed logins" in locked.json()["detail"] and int(locked.headers["Retry-After"]) >= 1
    assert login(app, "cat", "cat-password-1")[1].status_code == 200  # another name from the same address
    # many names guessed from one address lock the address (this module's earlier failures count too)
    answers = []
    for k in range(FREE_PER_ADDRESS):
        answers.append(login(app, f"guess{k}", "wrong-password")[1].status_code)
        if answers[-1] == 429:
            break
    assert answers[-1] == 429 and set(answers[:-1]) == {400} and len(answers) > FREE_PER_ADDRESS - FREE - 2, answers
    assert login(app, "cat", "cat-password-1")[1].status_code == 429
