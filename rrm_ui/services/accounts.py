"""Annotator accounts: names, roles, passwords.

Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, a random 16-byte salt per
password) into one self-describing string, ``scrypt$n$r$p$salt_b64$hash_b64``, and checked in
constant time. The hash string is opaque outside this module and the storage layer.

The app asks for a login once any annotator has a password (:func:`has_accounts`); before that
it runs in local single-user mode. Annotators created by imports have no password until one is
set with :func:`add_user`, which keeps their labels attached to the same name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import cache

from rrm_ui.domain import Account, Role
from rrm_ui.storage import Repository

MIN_PASSWORD = 8
MAX_NAME = 100  # the column's length
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB of memory per hash
_SALT_BYTES, _KEY_BYTES = 16, 32


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password`` as ``scrypt$n$r$p$salt_b64$hash_b64``."""
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)])


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the hash string (constant-time compare of the whole key; a
    malformed or truncated string is False)."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, OverflowError):
        return False
    return hmac.compare_digest(actual, expected)


def check_name(name: str) -> str:
    """The name without surrounding whitespace; ValueError when empty or too long."""
    cleaned = name.strip()
    if not cleaned:
        raise ValueError("a user name cannot be empty")
    if len(cleaned) > MAX_NAME:
        raise ValueError(f"a user name can have at most {MAX_NAME} characters")
    return cleaned


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")


def add_user(repo: Repository, name: str, password: str, role: Role = Role.ANNOTATOR) -> Account:
    """Create an account; an annotator that exists without a password (e.g. from an import) gets the
    password and role. Refused (ValueError) for an empty or too long name, a short password, and a
    name that already has a password."""
    name = check_name(name)
    check_password(password)
    return repo.save_account(name, hash_password(password), role)


def authenticate(repo: Repository, name: str, password: str) -> Account | None:
    """The account when the name has a password and it matches; otherwise None.

    An unknown name costs the same scrypt work as a wrong password, so timing does not reveal it.
    """
    found = repo.credentials(name.strip())
    if found is None or found[1] is None:
        verify_password(password, _dummy_hash())
        return None
    acct, stored = found
    return acct if verify_password(password, stored) else None


def has_accounts(repo: Repository) -> bool:
    """Whether any annotator has a password: then the app requires a login."""
    return repo.has_accounts()


def account(repo: Repository, name: str) -> Account | None:
    return repo.account(name)


def list_users(repo: Repository) -> list[Account]:
    """Every annotator by name, including those without a password (from imports)."""
    return repo.accounts()


def set_role(repo: Repository, name: str, role: Role) -> Account:
    return repo.set_role(name, role)


def set_password(repo: Repository, name: str, password: str) -> Account:
    """Replace (or set) the password of an existing annotator and end every session it has open:
    cookies from a login before this stop working at the app's next request (no restart)."""
    check_password(password)
    return repo.set_login(check_name(name), hash_password(password))


def remove_password(repo: Repository, name: str) -> Account:
    """Disable the account's login and end its open sessions; its labels stay."""
    return repo.set_login(check_name(name), None)


def session_owner(repo: Repository, session_hash: str, user: str) -> str:
    """The user a Gradio session belongs to (the first one who used it), in every app process:
    the login gate refuses the session to anyone else."""
    return repo.claim_session(session_hash, user)


def session_epoch(repo: Repository, name: str) -> int | None:
    """The account's session epoch (raised by :func:`set_password` and :func:`remove_password`);
    None when the name cannot log in. The login gate keeps the epoch each session began under."""
    return repo.session_epoch(name.strip())


class LoginThrottle:
    """Failed logins slow down, per name and per address (in memory, per app process).

    The first ``free`` failures of a name (``free_per_address`` of an address: several people may
    share one) cost nothing; each failure after them locks further tries for ``base_s * 2**k``
    seconds (k = 0, 1, ...), at most ``max_s``. A successful login forgets the name's failures;
    ``forget_s`` without a failure forgets a name's or an address's. While locked, a login is
    refused before its password is checked, so a guesser cannot make the server spend scrypt's
    16 MiB and 30 ms on every try.
    """

    MAX_KEYS = 100_000

    def __init__(self, *, free: int = 5, free_per_address: int = 20, base_s: float = 1.0, max_s: float = 900.0,
                 forget_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.free, self.free_per_address = free, free_per_address
        self.base_s, self.max_s, self.forget_s, self.clock = base_s, max_s, forget_s, clock
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()  # key -> (count, last)
        self._lock = threading.Lock()

    def wait_s(self, name: str, address: str | None) -> float:
        """Seconds until a login for ``name`` from ``address`` may be tried; 0 when it may now."""
        with self._lock:
            return max(
                self._wait(("name", name.strip()), self.free),
                self._wait(("address", address or ""), self.free_per_address),
            )

    def failed(self, name: str, address: str | None) -> None:
        now = self.clock()
        with self._lock:
            for key in (("name", name.strip()), ("address", address or "")):
                count, _ = self._current(key)
                self._failures[key] = (count + 1, now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.MAX_KEYS:
                self._failures.popitem(last=False)

    def succeeded(self, name: str, address: str | None) -> None:
        with self._lock:
            self._failures.pop(("name", name.strip()), None)

    def _current(self, key: tuple[str, str]) -> tuple[int, float]:
        count, last = self._failures.get(key, (0, 0.0))
        if count and self.clock() - last > self.forget_s:
            del self._failures[key]
            return 0, 0.0
        return count, last

    def _wait(self, key: tuple[str, str], free: int) -> float:
        count, last = self._current(key)
        if count < free:
            return 0.0
        lock = min(self.max_s, self.base_s * 2 ** (count - free))
        return max(0.0, last + lock - self.clock())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    maxmem = 2 * 128 * n * r * p + 2**20  # scrypt needs 128*n*r bytes; the default limit is 32 MiB
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=maxmem)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@cache
def _dummy_hash() -> str:
    return hash_password("not a real password")


__all__ = [
    "MIN_PASSWORD",
    "LoginThrottle",
    "account",
    "add_user",
    "authenticate",
    "has_accounts",
    "hash_password",
    "list_users",
    "remove_password",
    "session_epoch",
    "session_owner",
    "set_password",
    "set_role",
    "verify_password",
]
