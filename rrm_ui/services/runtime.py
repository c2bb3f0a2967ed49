"""The app's runtime: settings, the repository, one background event loop and the model.

Everything that touches the model runs on one asyncio loop in a background thread: vLLM's
``AsyncLLM`` and the engine's semaphores bind to the loop that first uses them, while the web
server calls handlers from its own threads. Handlers hand coroutines over with
:meth:`Runtime.submit`.

The model loads in the background after the app starts, so the app is usable at once for what
needs no model (import, annotation, dashboards, export). :attr:`Runtime.model` says whether it
is loading, ready or failed, and on failure what to do about it. A model behind a server (the
openai backend) is ready once the backend is set up, but ``usable`` only while a server answers
``GET /models`` with the model: the runtime checks at start and every ``endpoint_check_s``
afterwards, and ``problems`` says what is wrong with each endpoint and how to fix it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from rrm_ui.backends import Backend, choose_backend, create_backend
from rrm_ui.backends.models import FIXES
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, JudgeSpec, Sampling
from rrm_ui.engine.judge import Judge, Observer
from rrm_ui.services.judging import BATCH_PRIORITY, INTERACTIVE_PRIORITY, build_judge, make_spec, sampling_from
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
    usable: bool = True  # ready and reachable: False while no server answers with the model
    problems: tuple[str, ...] = ()  # what is wrong with the servers, each with its fix

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
        self.endpoint_check_s = 10.0  # how often a server-backed model is checked again
        self._watcher: asyncio.Task[None] | None = None

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

    def use_model(self, model: str) -> concurrent.futures.Future[None]:
        """Load ``model`` in place of one that could not be loaded (the banner's demo judge): refused while
        a model is loaded or loading, so no job or stream loses its backend."""
        with self._lock:
            if self._state.status != ModelStatus.FAILED or self._backend is not None:
                raise RuntimeError(f"a model is {self._state.status.value}: restart the app to use another one")
            self.settings = self.settings.but(model=model)
            self._state = ModelState(ModelStatus.LOADING, self.settings.backend, model)
            self._ready.clear()
        return self.load_model()

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
        await self._check(backend)
        if type(backend).check is not Backend.check:  # a server-backed model: keep checking it
            self._watcher = asyncio.get_running_loop().create_task(self._watch(backend))

    async def _check(self, backend: Backend) -> None:
        try:
            usable, problems = await backend.check()
        except Exception as exc:  # noqa: BLE001 - a failed check is a problem to show, not a crash
            usable, problems = False, [f"checking the server failed: {type(exc).__name__}: {exc}"]
        self._set(ModelState(ModelStatus.READY, backend.name, backend.model, usable=usable, problems=tuple(problems)))

    async def _watch(self, backend: Backend) -> None:
        while True:
            await asyncio.sleep(self.endpoint_check_s)
            await self._check(backend)

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
        return sampling_from(self.settings, **changes)

    def _loaded(self) -> Backend:
        state = self.model
        if self._backend is None:
            if state.status == ModelStatus.LOADING:
                raise ModelUnavailable(f"the model {state.model} is still loading")
            raise ModelUnavailable(f"no model is loaded: {state.message}")
        return self._backend

    def spec(self, compute: Compute, sampling: Sampling | None = None, strategy: str = "auto",
             judge: str | None = None) -> JudgeSpec:  # fmt: skip
        """The spec of judging with the loaded model (``judge``: a format name, default the settings');
        raises :class:`ModelUnavailable` while there is none."""
        return make_spec(self._loaded(), self.settings, compute=compute, sampling=sampling, strategy=strategy,
                         judge=judge)  # fmt: skip

    def judge_for(self, spec: JudgeSpec, observer: Observer | None = None, *, priority: int = BATCH_PRIORITY) -> Judge:
        """A judge of ``spec`` on the loaded model (``judging.build_judge``; batch jobs' priority unless
        told); :class:`ModelUnavailable` while there is none, ``ModelMismatch`` when the spec needs another model."""
        return build_judge(spec, self._loaded(), self.settings, observer, priority=priority)

    def judge(self, compute: Compute, sampling: Sampling, observer: Observer | None = None,
              judge: str | None = None) -> Judge:  # fmt: skip
        """A judge on the loaded backend for a user waiting on the page (the Judge tab, the Explorer's
        re-judge: ``INTERACTIVE_PRIORITY``); raises :class:`ModelUnavailable` while there is none."""
        return self.judge_for(self.spec(compute, sampling, judge=judge), observer, priority=INTERACTIVE_PRIORITY)

    def close(self) -> None:
        if self._watcher is not None:
            self.loop.call_soon_threadsafe(self._watcher.cancel)
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


def build_and_use_demo_judge(runtime: Runtime, progress: Any = None, *, steps: int | None = None) -> str:
    """The no-model banner's one click: train the demo judge (``rrm_ui.dev.demo_judge``; a wiring and demo
    model whose verdicts follow a documented distribution, not quality) into ``settings.demo_judge_dir``
    unless one is there already, and load it in place of the model that could not be loaded.
    ``progress(fraction, message)`` follows the training. Returns the directory."""
    from pathlib import Path

    from rrm_ui.dev.demo_judge import INFO_FILE, build_demo_judge

    if runtime.model.status != ModelStatus.FAILED:
        raise RuntimeError("a model is loaded or loading: the demo judge replaces only a model that failed")
    out = Path(runtime.settings.demo_judge_dir)
    if not (out / INFO_FILE).is_file():
        build_demo_judge(out, progress=progress, **({"steps": steps} if steps else {}))
    runtime.use_model(str(out)).result()
    return str(out)
