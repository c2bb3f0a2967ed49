"""Accounts (a part of :class:`~rrm_ui.storage.repository.Repository`).

Accounts are ``annotators`` rows; a row with a password hash is an account that can log in.
Rows without one come from imports (or local single-user mode) and can be given a password.
The hash is an opaque string here: :mod:`rrm_ui.services.accounts` makes and checks it. Roles:
``annotator``, ``reviewer`` (also adjudicates), ``admin``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rrm_ui.domain import Account, Role
from rrm_ui.storage import models as m

T = TypeVar("T")


class AccountExists(ValueError):
    pass


class AccountStore:
    """Mixin: needs the repository's ``_tx`` and ``_query``."""

    if TYPE_CHECKING:

        def _tx(self, fn: Callable[[Session], T]) -> T: ...

        def _query(self, fn: Callable[[Session], T]) -> T: ...

    def account(self, name: str) -> Account | None:
        return self._query(lambda s: _maybe_account(s.scalar(select(m.Annotator).where(m.Annotator.name == name))))

    def accounts(self) -> list[Account]:
        """Every annotator, with or without a password, by name."""
        return self._query(lambda s: [_account(r) for r in s.scalars(select(m.Annotator).order_by(m.Annotator.name))])

    def has_accounts(self) -> bool:
        """Whether any annotator has a password (then the app asks for a login)."""
        q = select(exists().where(m.Annotator.password_hash.is_not(None)))
        return bool(self._query(lambda s: s.scalar(q)))

    def credentials(self, name: str) -> tuple[Account, str | None] | None:
        """The account and its stored password hash (for the accounts service only)."""

        def read(s: Session) -> tuple[Account, str | None] | None:
            row = s.scalar(select(m.Annotator).where(m.Annotator.name == name))
            return None if row is None else (_account(row), row.password_hash)

        return self._query(read)

    def save_account(self, name: str, password_hash: str, role: Role) -> Account:
        """Create an account, or give a password and role to an annotator that has no password.

        Raises :class:`AccountExists` when the name already has a password.
        """

        def write(s: Session) -> Account:
            row = s.scalar(select(m.Annotator).where(m.Annotator.name == name))
            if row is not None and row.password_hash is not None:
                raise AccountExists(f"an account named {name!r} exists already")
            if row is None:
                row = m.Annotator(name=name)
                s.add(row)
            row.password_hash, row.role = password_hash, role.value
            s.flush()
            return _account(row)

        try:
            return self._tx(write)
        except IntegrityError as exc:  # PostgreSQL: the same new name added at the same moment
            raise AccountExists(f"an account named {name!r} exists already") from exc

    def set_role(self, name: str, role: Role) -> Account:
        return self._update_annotator(name, role=role.value)

    def set_password_hash(self, name: str, password_hash: str | None) -> Account:
        """Replace the password hash; ``None`` disables the account's login."""
        return self._update_annotator(name, password_hash=password_hash)

    def claim_session(self, session_hash: str, user: str, *, keep: int = 100_000) -> str:
        """The user a Gradio session belongs to: ``user`` if nobody used it before (then it is theirs),
        else its owner. Shared by every app process on the database (``login_sessions``); an insert
        that loses a race reads the winner's row. Beyond ``keep`` sessions the oldest are forgotten
        (one in a thousand claims trims)."""

        def write(s: Session) -> str:
            owner = s.scalar(select(m.LoginSession.user_name).where(m.LoginSession.session_hash == session_hash))
            if owner is not None:
                return owner
            try:
                with s.begin_nested():
                    s.add(m.LoginSession(session_hash=session_hash, user_name=user))
                    s.flush()
            except IntegrityError:
                found = s.scalar(select(m.LoginSession.user_name).where(m.LoginSession.session_hash == session_hash))
                if found is None:
                    raise
                return found
            if secrets.randbelow(1000) == 0:
                cutoff = select(m.LoginSession.created_at).order_by(m.LoginSession.created_at.desc()).offset(keep)
                oldest = s.scalar(cutoff.limit(1))
                if oldest is not None:
                    s.execute(delete(m.LoginSession).where(m.LoginSession.created_at <= oldest))
            return user

        return self._tx(write)

    def _update_annotator(self, name: str, **values: Any) -> Account:
        def write(s: Session) -> Account:
            row = s.scalar(select(m.Annotator).where(m.Annotator.name == name))
            if row is None:
                raise ValueError(f"no annotator named {name!r}")
            for key, value in values.items():
                setattr(row, key, value)
            s.flush()
            return _account(row)

        return self._tx(write)


def _account(row: m.Annotator) -> Account:
    return Account(row.id, row.name, Role(row.role), row.password_hash is not None)


def _maybe_account(row: m.Annotator | None) -> Account | None:
    return None if row is None else _account(row)
