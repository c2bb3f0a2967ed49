"""The no-model banner's one click (issue 16): an admin trains the demo judge and it replaces the model
that could not be loaded; an annotator may not; a model that loaded is never replaced. The demo judge
is trained for real (a short run: its verdicts are not checked here, only that it loads and judges)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.services import open_repository
from rrm_ui.services.runtime import ModelStatus, Runtime
from tests.test_ui_pages import Req


def _runtime(tmp_path: Path) -> Runtime:
    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"), device="cpu",
                        database_url=f"sqlite:///{tmp_path / 'd.db'}", hf_offline=True, max_tokens=24,
                        demo_judge_dir=str(tmp_path / "demo"))  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    rt.load_model().result()
    assert rt.model.status == ModelStatus.FAILED
    return rt


@pytest.mark.slow
def test_an_admin_builds_and_loads_the_demo_judge_in_one_click(tmp_path: Path) -> None:
    from rrm_ui.domain import Item, Role
    from rrm_ui.services import accounts
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.ui.app import banner_html, build_demo
    from rrm_ui.ui.context import AppContext

    rt = _runtime(tmp_path)
    jobs = JobManager(rt.repo, rt)
    try:
        accounts.add_user(rt.repo, "boss", "correct horse battery", Role.ADMIN)
        accounts.add_user(rt.repo, "ann", "correct horse battery")
        ctx = AppContext(rt, jobs, login=True)
        with pytest.raises(PermissionError):
            build_demo(ctx, Req("ann"), steps=20)
        seen: list[float] = []
        said = build_demo(ctx, Req("boss"), lambda f, _m: seen.append(f), steps=20)
        assert "demo judge is loaded" in said and seen and max(seen) <= 1.0
        state = rt.model
        assert state.status == ModelStatus.READY and state.model == str(tmp_path / "demo")
        assert "Model ready" in banner_html(state)
        from rrm_ui.domain import Compute

        judge = rt.judge(Compute(votes=1), rt.sampling())
        out = rt.call(judge.judge_pair(Item("q", "Which is right?", ("Four.", "Five.")), 0, 1), timeout=300)
        assert out.judgments and out.judgments[0].completion_tokens > 0  # it generates through the backend
        with pytest.raises(RuntimeError, match="loaded or loading"):
            build_demo(ctx, Req("boss"), steps=20)  # a loaded model is never replaced
    finally:
        jobs.shutdown()
        rt.close()
