"""Accounts against SQLite and a real PostgreSQL server: scrypt hashes, validation, imported
annotators getting a password, login switched on by the first account, and the ``users`` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rrm_ui.cli import main
from rrm_ui.domain import Choice, ImportedDataset, ImportedItem, ImportedLabel, Role
from rrm_ui.services import accounts
from rrm_ui.storage import Repository, make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(db_url: str) -> Repository:
    engine = make_engine(db_url)
    upgrade(engine)
    return Repository(engine)


def test_password_hash_round_trip() -> None:
    encoded = accounts.hash_password("correct horse")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", accounts.SCRYPT_N, accounts.SCRYPT_R, accounts.SCRYPT_P)
    assert "correct horse" not in encoded
    assert accounts.verify_password("correct horse", encoded)
    assert not accounts.verify_password("correct horsE", encoded)
    assert not accounts.verify_password("", encoded)
    again = accounts.hash_password("correct horse")
    assert again != encoded and again.split("$")[4] != salt  # a fresh salt each time
    assert accounts.verify_password("correct horse", again)
    for broken in ("", "plain", encoded.replace("scrypt", "bcrypt"), encoded[:-8], "scrypt$x$8$1$AA==$AA=="):
        assert not accounts.verify_password("correct horse", broken)


def test_add_user_and_authenticate(repo: Repository) -> None:
    assert not accounts.has_accounts(repo)
    alice = accounts.add_user(repo, "alice", "s3cret-pass", Role.ADMIN)
    assert (alice.name, alice.role, alice.has_password) == ("alice", Role.ADMIN, True)
    assert accounts.has_accounts(repo)
    assert accounts.authenticate(repo, "alice", "s3cret-pass") == alice
    assert accounts.authenticate(repo, " alice ", "s3cret-pass") == alice
    assert accounts.authenticate(repo, "alice", "s3cret-pasS") is None
    assert accounts.authenticate(repo, "nobody", "s3cret-pass") is None
    bob = accounts.add_user(repo, "  bob  ", "another-pass")
    assert bob.name == "bob" and bob.role is Role.ANNOTATOR
    assert accounts.account(repo, "bob") == bob
    assert [a.name for a in accounts.list_users(repo)] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("", "long enough", "empty"),
        ("   ", "long enough", "empty"),
        ("x" * (accounts.MAX_NAME + 1), "long enough", "at most"),
        ("carol", "x" * (accounts.MIN_PASSWORD - 1), "at least"),
    ],
)
def test_add_user_refuses_bad_input(tmp_path: Path, name: str, password: str, message: str) -> None:
    repo = Repository(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    upgrade(repo.engine)
    with pytest.raises(ValueError, match=message):
        accounts.add_user(repo, name, password)
    assert accounts.list_users(repo) == []
    accounts.add_user(repo, "x" * accounts.MAX_NAME, "x" * accounts.MIN_PASSWORD)  # the limits themselves pass


def test_an_existing_account_is_not_overwritten(repo: Repository) -> None:
    first = accounts.add_user(repo, "alice", "first-password")
    with pytest.raises(ValueError, match="exists already"):
        accounts.add_user(repo, "alice", "second-password", Role.ADMIN)
    assert accounts.authenticate(repo, "alice", "first-password") == first
    assert accounts.authenticate(repo, "alice", "second-password") is None


def test_an_imported_annotator_gets_a_password_and_keeps_labels(repo: Repository) -> None:
    items = tuple(ImportedItem(f"x{k}", f"q{k}", ("a", "b"), k + 1) for k in range(3))
    labels = (ImportedLabel("x0", "dana", Choice.A), ImportedLabel("x2", "dana", Choice.B))
    info = repo.create_dataset(ImportedDataset("d", "/d.jsonl", "pairwise", items, labels=labels))
    (imported,) = accounts.list_users(repo)
    assert (imported.name, imported.has_password) == ("dana", False)
    assert not accounts.has_accounts(repo)  # an annotator without a password does not switch login on
    assert accounts.authenticate(repo, "dana", "") is None
    dana = accounts.add_user(repo, "dana", "now-with-password", Role.ADMIN)
    assert dana.id == imported.id and dana.role is Role.ADMIN and dana.has_password
    assert accounts.has_accounts(repo)
    assert accounts.authenticate(repo, "dana", "now-with-password") == dana
    assert list(repo.latest_labels(info.id)["annotator"]) == ["dana"] * len(labels)


def test_roles_and_disabling(repo: Repository) -> None:
    accounts.add_user(repo, "erin", "erins-password")
    assert accounts.set_role(repo, "erin", Role.ADMIN).role is Role.ADMIN
    assert accounts.authenticate(repo, "erin", "erins-password").role is Role.ADMIN
    with pytest.raises(ValueError, match="at least"):
        accounts.set_password(repo, "erin", "short")
    accounts.set_password(repo, "erin", "a-new-password")
    assert accounts.authenticate(repo, "erin", "erins-password") is None
    assert accounts.authenticate(repo, "erin", "a-new-password") is not None
    disabled = accounts.remove_password(repo, "erin")
    assert not disabled.has_password and not accounts.has_accounts(repo)
    assert accounts.authenticate(repo, "erin", "a-new-password") is None
    with pytest.raises(ValueError, match="no annotator"):
        accounts.set_role(repo, "nobody", Role.ADMIN)


# --- the CLI -------------------------------------------------------------------------------------


def _users(db: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, str]]:
    """name -> (role, password column) as ``rrm-ui users list`` prints them."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["users", "list", "--db", db]) == 0
    header, *rows = out.getvalue().splitlines()
    assert header.split() == ["name", "role", "password"]
    return {name: (role, pw) for name, role, pw in (r.split() for r in rows)}


def test_cli_users_add_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    import io

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("admin-password\n"))
    assert main(["users", "add", "root", "--admin", "--password-stdin", "--db", db]) == 0
    assert "first account" in capsys.readouterr().out

    prompts = iter(["typed-password", "typed-password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(prompts))
    assert main(["users", "add", "ann", "--db", db]) == 0
    assert "first account" not in capsys.readouterr().out

    prompts = iter(["one-password", "another-password"])
    assert main(["users", "add", "mismatch", "--db", db]) == 2
    assert "differ" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "shorty", "--password-stdin", "--db", db]) == 2
    assert "at least" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("admin-password\n"))
    assert main(["users", "add", "root", "--password-stdin", "--db", db]) == 2
    assert "exists already" in capsys.readouterr().err

    assert _users(db, monkeypatch) == {"root": ("admin", "yes"), "ann": ("annotator", "yes")}
    repo = Repository(make_engine(db))
    assert accounts.authenticate(repo, "root", "admin-password").role is Role.ADMIN
    assert accounts.authenticate(repo, "ann", "typed-password").role is Role.ANNOTATOR


def test_cli_as_a_process(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'proc.db'}"
    cmd = [sys.executable, "-m", "rrm_ui", "users"]
    add = subprocess.run([*cmd, "add", "pat", "--password-stdin", "--db", db], input="pats-password\n",
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert "login" in add.stdout
    listed = subprocess.run([*cmd, "list", "--db", db], capture_output=True, text=True, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split() == ["pat", "annotator", "yes"]


def test_a_new_password_or_a_removal_raises_the_session_epoch(repo: Repository) -> None:
    accounts.add_user(repo, "erin", "first-password")
    start = accounts.session_epoch(repo, "erin")
    assert start is not None and accounts.session_epoch(repo, " erin ") == start
    accounts.set_password(repo, "erin", "second-password")
    assert accounts.session_epoch(repo, "erin") == start + 1
    accounts.remove_password(repo, "erin")
    assert accounts.session_epoch(repo, "erin") is None  # no login: every session refused
    assert accounts.session_epoch(repo, "nobody") is None
    accounts.set_password(repo, "erin", "third-password")
    assert accounts.session_epoch(repo, "erin") == start + 3


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_back_off_per_name_and_per_address() -> None:
    clock = Clock()
    t = accounts.LoginThrottle(free=3, free_per_address=5, base_s=2.0, max_s=30.0, forget_s=100.0, clock=clock)
    for _ in range(3):  # the free tries
        assert t.wait_s("alice", "10.0.0.1") == 0
        t.failed("alice", "10.0.0.1")
    assert t.wait_s("alice", "10.0.0.1") == 2.0  # locked 2 s after the 3rd failure
    assert t.wait_s("alice", "10.0.0.9") == 2.0  # the name is locked from any address
    assert t.wait_s("bob", "10.0.0.1") == 0  # the address has 5 free tries
    clock.now += 2.0
    assert t.wait_s("alice", "10.0.0.1") == 0
    t.failed("alice", "10.0.0.1")  # 4th: 4 s
    assert t.wait_s(" alice ", "10.0.0.2") == 4.0
    clock.now += 4.0
    t.failed("alice", "10.0.0.1")  # 5th failure of the name and of the address: 8 s; the address too (5 free)
    assert t.wait_s("alice", "10.0.0.1") == 8.0
    assert t.wait_s("bob", "10.0.0.1") == 2.0  # the address is locked for every name now
    assert t.wait_s("bob", "10.0.0.7") == 0
    for _ in range(10):  # doubling stops at max_s
        clock.now += 60
        t.failed("alice", "10.0.0.3")
    assert t.wait_s("alice", "10.0.0.3") == 30.0
    t.succeeded("alice", "10.0.0.3")  # a success forgets the name's failures (not the address's)
    assert t.wait_s("alice", "10.0.0.8") == 0 and t.wait_s("carol", "10.0.0.3") > 0
    clock.now += 101  # a quiet while forgets the address's too
    assert t.wait_s("carol", "10.0.0.3") == 0 and t.wait_s("alice", "10.0.0.1") == 0
