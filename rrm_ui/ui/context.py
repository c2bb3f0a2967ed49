"""What every tab's handlers get: the runtime, the job manager, and who is asking.

With no accounts in the database the app runs as one local user, ``local``, with admin
rights. With accounts, Gradio's login is on and ``request.username`` names the annotator.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from rrm_ui.domain import Role
from rrm_ui.services import accounts
from rrm_ui.services.insights import Insights
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.live import LiveJudgment
from rrm_ui.services.runtime import Runtime

LOCAL_USER = "local"
MAX_SESSIONS = 256  # finished live judgments kept for labelling, beyond which the oldest are dropped


class RequestLike(Protocol):
    """The parts of ``gradio.Request`` the handlers use (tests pass a small stand-in)."""

    username: str | None
    session_hash: str | None


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool
    is_reviewer: bool = False  # a reviewer account (admins review too: see can_review)

    @property
    def can_review(self) -> bool:
        """Adjudicates, and sees every annotator's labels (docs/review.md)."""
        return self.is_admin or self.is_reviewer


@dataclass
class AppContext:
    runtime: Runtime
    jobs: JobManager
    login: bool  # accounts exist: every page needs a login
    overlap: int = 1  # annotation queue: annotators per item
    _insights: Insights | None = None
    views: dict[Any, Any] = field(default_factory=dict)  # the Dashboards tab's built figures, newest last
    _live: dict[str, LiveJudgment] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def repo(self) -> Any:
        return self.runtime.repo

    @property
    def insights(self) -> Insights:
        """The dashboards' cache of derived frames (one per app, built on first use)."""
        with self._lock:
            if self._insights is None:
                self._insights = Insights(self.repo)
            return self._insights

    def user(self, request: RequestLike | None) -> User:
        if not self.login:
            return User(LOCAL_USER, True)
        name = getattr(request, "username", None)
        if not name:
            raise PermissionError("not logged in")
        account = accounts.account(self.repo, name)
        if account is None:
            raise PermissionError(f"no account named {name!r}")
        return User(account.name, account.role == Role.ADMIN, account.role == Role.REVIEWER)

    @staticmethod
    def session(request: RequestLike | None) -> str:
        """The key of the page's live judgments: its session hash, under its user's name, so a session
        hash sent by another user (the app's LoginGate refuses that already) never reaches them."""
        user = getattr(request, "username", None) or ""
        return f"{user}:{getattr(request, 'session_hash', None) or 'default'}"

    def live(self, request: RequestLike | None, slot: str = "judge") -> LiveJudgment | None:
        with self._lock:
            return self._live.get(f"{slot}:{self.session(request)}")

    def set_live(self, request: RequestLike | None, live: LiveJudgment, slot: str = "judge") -> None:
        """Remember the session's judgment (for Stop and labels); finished ones of old sessions are dropped.

        Each tab that judges has its own ``slot``, so re-judging in the explorer leaves the Judge tab alone.
        """
        key = f"{slot}:{self.session(request)}"
        with self._lock:
            old = self._live.pop(key, None)
            self._live[key] = live
            finished = [k for k, v in self._live.items() if v.finished]
            for key in finished[: max(0, len(self._live) - MAX_SESSIONS)]:  # oldest first (insertion order)
                del self._live[key]
        if old is not None and not old.finished:
            old.stop()
