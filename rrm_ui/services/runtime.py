"""The app's runtime: settings, the repository, one background event loop and the model.

Everything that touches the model runs on one asyncio loop in a background thread: vLLM's
``AsyncLLM`` and the engine's semaphores bind to the loop that first uses them, while the web
server calls handlers from its own threads. Handlers hand coroutines over with
:meth:`Runtime.submit`.

The model loads in the background after the app starts, so the app is usable at once for what
needs no model (import, annotation, dashboards, export). :attr:`Runtime.model` says whether it
is loading, ready or failed, and on failure what to do about it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from rrm_ui.backends import Backend, choose_backend, create_backend
from rrm_ui.backends.models import FIXES
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, Sampling
from rrm_ui.engine.judge import Judge, Observer
from rrm_ui.protocol import get_format
from rrm_ui.storage import Repository

T = TypeVar("T")

DEFAULT_MODEL = "Reward-Reasoning/RRM-7B"


class ModelUnavailable(RuntimeError):
    """Raised when something needs the model and it is not loaded (the message says why)."""


class ModelStatus(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelState:
    status: ModelStatus
    backend: str
    model: str
    message: str = ""

    @property
    def fix(self) -> str:
        return FIXES


def app_settings(settings: Settings) -> Settings:
    """The app's defaults: the backend resolved, and with no model and no endpoint, RRM-7B."""
    if not settings.model and not settings.endpoints:
        settings = settings.but(model=DEFAULT_MODEL)
    return choose_backend(settings)


class Runtime:
    """Owns the background loop, the backend and the repository for the lifetime of the app."""

    def __init__(self, settings: Settings, repo: Repository) -> None:
        self.settings = settings
        self.repo = repo
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rrm-ui-model-loop", daemon=True)
        self._thread.start()
        self._backend: Backend | None = None
        self._lock = threading.Lock()
        self._state = ModelState(ModelStatus.LOADING, settings.backend, settings.model or "(server's model)")
        self._ready = threading.Event()

    # --- the loop ----------------------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the model loop; the returned future can be cancelled from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    # --- the model ---------------------------------------------------------------------------

    @property
    def model(self) -> ModelState:
        with self._lock:
            return self._state

    def load_model(self) -> concurrent.futures.Future[None]:
        """Start loading the backend in the background; :attr:`model` follows its progress."""
        return self.submit(self._load())

    def wait_for_model(self, timeout: float | None = None) -> ModelState:
        self._ready.wait(timeout)
        return self.model

    async def _load(self) -> None:
        s = self.settings
        try:
            # resolving a hub id may block on the network: keep it off the loop
            backend = await asyncio.to_thread(create_backend, s)
            await backend.start()
        except BaseException as exc:  # noqa: BLE001 - the app keeps running and says why in the banner
            message = str(exc).strip() or type(exc).__name__
            if isinstance(exc, MemoryError):
                message = "not enough memory to load the model"
            self._set(ModelState(ModelStatus.FAILED, s.backend, s.model or "", message))
            if not isinstance(exc, Exception):
                raise
            return
        self._backend = backend
        self._set(ModelState(ModelStatus.READY, backend.name, backend.model))

    def _set(self, state: ModelState) -> None:
        with self._lock:
            self._state = state
        if state.status != ModelStatus.LOADING:
            self._ready.set()

    @property
    def ui_concurrency(self) -> int:
        """How many users' judging requests the web queue lets run at once.

        In-process transformers: one (a second generate() in parallel would only slow both);
        vLLM and HTTP backends batch many requests, so up to 16 streams run side by side.
        """
        if self.settings.backend == "transformers":
            return 1
        return max(1, min(16, self.settings.concurrency or 16))

    def sampling(self, **changes: Any) -> Sampling:
        s = self.settings
        base = Sampling(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed)
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def judge(self, compute: Compute, sampling: Sampling, observer: Observer | None = None) -> Judge:
        """A judge on the loaded backend; raises :class:`ModelUnavailable` while there is none."""
        state = self.model
        if self._backend is None:
            if state.status == ModelStatus.LOADING:
                raise ModelUnavailable(f"the model {state.model} is still loading")
            raise ModelUnavailable(f"no model is loaded: {state.message}")
        return Judge(
            self._backend,
            get_format(self.settings.judge_format),
            sampling=sampling,
            compute=compute,
            concurrency=self.settings.concurrency,
            observer=observer,
            retries=self.settings.retries,
            retry_wait_s=self.settings.retry_wait_s,
        )

    def close(self) -> None:
        if self._backend is not None:
            try:
                self.call(self._backend.close(), timeout=30)
            except Exception:  # noqa: BLE001 - closing on the way out; nothing left to report to
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


__all__ = [
    "DEFAULT_MODEL",
    "ModelState",
    "ModelStatus",
    "ModelUnavailable",
    "Runtime",
    "app_settings",
]
