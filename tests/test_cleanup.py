"""Old exports and uploads are removed at start and on a schedule: the cleaner on real files."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from rrm_ui.services import cleanup

HOUR = 3600.0


def aged(path: Path, age_s: float, *, text: str = "x") -> Path:
    """A file written ``age_s`` seconds ago (its mtime set back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def age_folder(path: Path, age_s: float) -> None:
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_old_files_and_emptied_old_folders_go_new_ones_stay(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    old = aged(root / "export-a" / "d.trl.jsonl", 2 * HOUR, text="12345")
    new = aged(root / "export-b" / "d.csv", 60)
    mixed_old = aged(root / "export-c" / "old.jsonl", 2 * HOUR)
    mixed_new = aged(root / "export-c" / "new.jsonl", 60)
    nested = aged(root / "export-d" / "deep" / "x.parquet", 3 * HOUR)
    empty_new = root / "export-e"
    empty_new.mkdir()
    outside = aged(tmp_path / "elsewhere" / "precious.txt", 5 * HOUR)
    link = root / "link-to-outside"
    link.symlink_to(outside.parent)
    then = time.time() - 2 * HOUR
    os.utime(link, (then, then), follow_symlinks=False)
    for folder in ("export-a", "export-c", "export-d/deep", "export-d"):
        age_folder(root / folder, 2 * HOUR)

    removed = cleanup.remove_older_than(root, HOUR)

    assert not old.exists() and not old.parent.exists()  # the file and its emptied old folder
    assert new.exists() and mixed_new.exists() and not mixed_old.exists() and mixed_old.parent.exists()
    assert not nested.exists() and not (root / "export-d").exists()
    assert empty_new.exists()  # an empty folder made a moment ago: an export being written
    assert not link.exists() and not link.is_symlink() and outside.exists()  # the link went, not its target
    assert root.exists()
    assert (removed.files, removed.folders) == (4, 3)  # old, mixed_old, nested, the link; a, d/deep, d
    assert removed.bytes >= 5
    assert cleanup.remove_older_than(tmp_path / "no-such-folder", HOUR).files == 0


def test_the_cleaner_cleans_at_start_and_then_on_its_schedule(tmp_path: Path) -> None:
    uploads, exports = tmp_path / "gradio", tmp_path / "exports"
    left_by_last_run = aged(uploads / "abc123" / "data.jsonl", 2 * 86400)
    today = aged(uploads / "def456" / "data.jsonl", 600)
    c = cleanup.Cleaner([(uploads, 86400), (exports, HOUR)], every_s=0.2).start()
    try:
        assert not left_by_last_run.exists() and today.exists()  # at start, before anything is served
        later = aged(exports / "export-x" / "d.csv", 2 * HOUR)  # an export that aged while the app ran
        deadline = time.monotonic() + 10
        while later.exists():
            assert time.monotonic() < deadline, "the scheduled round never came"
            time.sleep(0.05)
        assert today.exists()
    finally:
        c.stop()


def test_the_app_cleans_its_own_export_folder_and_only_a_gradio_cache_folder() -> None:
    folder = cleanup.new_export_dir()
    try:
        assert folder.parent == cleanup.export_root() and folder.is_dir()
    finally:
        folder.rmdir()
    tmp = Path(tempfile.gettempdir())
    assert cleanup.app_targets(tmp / "gradio") == [(cleanup.export_root(), cleanup.EXPORT_MAX_AGE_S),
                                                   (tmp / "gradio", cleanup.UPLOAD_MAX_AGE_S)]  # fmt: skip
    assert cleanup.app_targets(tmp) == [(cleanup.export_root(), cleanup.EXPORT_MAX_AGE_S)]  # GRADIO_TEMP_DIR=/tmp


def test_the_app_asks_gradio_to_clean_its_cache(tmp_path: Path) -> None:
    from rrm_ui.config import Settings
    from rrm_ui.services import open_repository
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime
    from rrm_ui.ui import app
    from rrm_ui.ui.context import AppContext

    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'ui.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    try:
        demo = app.build(AppContext(rt, jobs, login=False))
        assert demo.delete_cache == (int(cleanup.CLEAN_EVERY_S), int(cleanup.UPLOAD_MAX_AGE_S))
    finally:
        jobs.shutdown()
        rt.close()
