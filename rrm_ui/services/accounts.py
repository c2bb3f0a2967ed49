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
    """Replace (or set) the password of an existing annotator."""
    check_password(password)
    return repo.set_password_hash(name, hash_password(password))


def remove_password(repo: Repository, name: str) -> Account:
    """Disable the account's login; its labels stay. With no password left, login turns off."""
    return repo.set_password_hash(name, None)


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
    "account",
    "add_user",
    "authenticate",
    "has_accounts",
    "hash_password",
    "list_users",
    "remove_password",
    "set_password",
    "set_role",
    "verify_password",
]
