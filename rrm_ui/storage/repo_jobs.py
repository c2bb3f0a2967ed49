"""Batch jobs and their progress (a part of :class:`~rrm_ui.storage.repository.Repository`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class JobStore:
    """Mixin: needs the repository's ``_tx`` and ``_query``."""

    _tx: Callable[..., object]
    _query: Callable[..., object]
