"""The banner tells the truth about an openai endpoint (issue 13, item 17).

With an endpoint that does not answer, the app said "Model ready". Now the runtime asks every
endpoint ``GET /models`` at start and again every ``endpoint_check_s``: the banner says which endpoint
is wrong, what it did and how to fix it, and turns to "Model ready" by itself once a server answers.
Real local HTTP servers (tests/test_openai_backend.py's scripted server) and a real SQLite database.
"""

from __future__ import annotations

import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from rrm_ui.config import Settings
from rrm_ui.services import open_repository
from rrm_ui.services.runtime import ModelStatus, Runtime
from rrm_ui.ui.app import banner_html
from tests.conftest import free_port
from tests.scripted_openai import Script, start_server


def serve_on(port: int, script: Script) -> ThreadingHTTPServer:
    return start_server(script, port)


def runtime_for(tmp_path: Path, url: str, model: str) -> Runtime:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rt.db'}", backend="openai", endpoints=(url,), model=model)
    rt = Runtime(settings, open_repository(settings))
    rt.endpoint_check_s = 0.1
    return rt


def wait_until(rt: Runtime, predicate, timeout: float = 30.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = rt.model
        if predicate(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"the model state never changed: {rt.model}")


def test_endpoint_that_does_not_answer_is_not_model_ready(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    rt = runtime_for(tmp_path, url, "scripted-judge")
    server = None
    try:
        rt.load_model()
        state = rt.wait_for_model(60)
        assert state.status is ModelStatus.READY and not state.usable
        [problem] = state.problems
        assert url in problem and "does not answer" in problem and "vllm serve" in problem and "--endpoint" in problem
        page = banner_html(state)
        assert "Model ready" not in page and "does not answer" in page and "rrm-banner--warning" in page

        server = serve_on(port, Script())  # the server comes up: the banner follows by itself
        state = wait_until(rt, lambda s: s.usable)
        assert state.problems == ()
        assert "Model ready" in banner_html(state)
    finally:
        rt.close()
        if server is not None:
            server.shutdown()
            server.server_close()


def test_endpoint_serving_another_model_says_so_with_the_fix(tmp_path: Path) -> None:
    port = free_port()
    server = serve_on(port, Script())  # serves "scripted-judge"
    rt = runtime_for(tmp_path, f"http://127.0.0.1:{port}/v1", "Reward-Reasoning/RRM-7B")
    try:
        rt.load_model()
        state = rt.wait_for_model(60)
        assert not state.usable
        [problem] = state.problems
        assert "serves scripted-judge, not Reward-Reasoning/RRM-7B" in problem
        assert "pass --model scripted-judge" in problem
        assert "Model ready" not in banner_html(state)
    finally:
        rt.close()
        server.shutdown()
        server.server_close()
