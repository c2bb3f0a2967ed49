"""Files the app leaves on disk, removed by age: Batch-tab exports and Gradio's upload cache.

An export is written into a folder of its own under :func:`export_root` (``<tmp>/rrm-ui-exports``),
then handed to Gradio, which serves a copy from its cache; uploads land in Gradio's cache too. Left
alone, both grow until the disk is full and SQLite's writes fail. So:

- ``gr.Blocks(delete_cache=(CLEAN_EVERY_S, UPLOAD_MAX_AGE_S))``: Gradio removes the files this app
  put in its cache once they are older than a day, every hour;
- a :class:`Cleaner` thread removes, at start and every hour, exports older than an hour, and
  files in Gradio's cache folder older than a day that an earlier run left (a killed app never
  cleans up after itself).

Only regular files and empty folders older than the age go; symbolic links are removed as links,
never followed; the root folders stay.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EXPORT_MAX_AGE_S = 3600.0  # an export is downloaded at once (Gradio serves its own copy)
UPLOAD_MAX_AGE_S = 86400.0  # an upload is previewed and imported within minutes; a day is generous
CLEAN_EVERY_S = 3600.0


@dataclass
class Removed:
    files: int = 0
    folders: int = 0
    bytes: int = 0

    def add(self, other: Removed) -> None:
        self.files += other.files
        self.folders += other.folders
        self.bytes += other.bytes


def export_root() -> Path:
    """The app's own folder for exports (one sub-folder per export)."""
    return Path(tempfile.gettempdir()) / "rrm-ui-exports"


def new_export_dir() -> Path:
    """A fresh folder for one export, under :func:`export_root`."""
    root = export_root()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="export-", dir=root))


def remove_older_than(root: Path, max_age_s: float, *, now: float | None = None) -> Removed:
    """Remove the files under ``root`` last modified more than ``max_age_s`` ago, and the folders
    that were that old and are empty then; ``root`` itself stays. Files that vanish meanwhile (another
    cleaner, Gradio's own) or cannot be removed are left to the next round."""
    cutoff = (time.time() if now is None else now) - max_age_s
    removed = Removed()
    if root.is_dir() and not root.is_symlink():
        _clean(str(root), cutoff, removed)
    return removed


def _clean(folder: str, cutoff: float, removed: Removed) -> bool:
    """Clean ``folder``; whether it is empty afterwards."""
    empty = True
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                if _clean(entry.path, cutoff, removed) and st.st_mtime < cutoff:
                    os.rmdir(entry.path)
                    removed.folders += 1
                else:
                    empty = False
            elif st.st_mtime < cutoff:
                os.unlink(entry.path)  # a symbolic link: the link goes, not what it points to
                removed.files += 1
                removed.bytes += st.st_size
            else:
                empty = False
        except FileNotFoundError:
            continue
        except OSError:
            empty = False
    return empty


class Cleaner:
    """Removes old files from ``targets`` (folder, max age in seconds) at start and every ``every_s``."""

    def __init__(self, targets: list[tuple[Path, float]], *, every_s: float = CLEAN_EVERY_S) -> None:
        self.targets = targets
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def clean(self) -> Removed:
        total = Removed()
        for folder, age in self.targets:
            done = remove_older_than(folder, age)
            if done.files or done.folders:
                log.info("removed %d files (%d bytes) and %d folders older than %.0f s from %s",
                         done.files, done.bytes, done.folders, age, folder)  # fmt: skip
            total.add(done)
        return total

    def start(self) -> Cleaner:
        """Clean once now (before the app serves anything), then in a daemon thread on the schedule."""
        self.clean()

        def loop() -> None:
            while not self._stop.wait(self.every_s):
                try:
                    self.clean()
                except Exception:  # noqa: BLE001 - the app goes on; the next round tries again
                    log.exception("cleaning old files failed")

        self._thread = threading.Thread(target=loop, name="rrm-ui-cleaner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def app_targets(gradio_cache: str | Path) -> list[tuple[Path, float]]:
    """What the app cleans: its exports, and Gradio's upload cache when that is a folder of its own
    (its name says gradio: the default ``<tmp>/gradio``); a ``GRADIO_TEMP_DIR`` shared with other
    files (``/tmp`` itself, say) is left to Gradio's ``delete_cache``, which removes only its own files."""
    targets = [(export_root(), EXPORT_MAX_AGE_S)]
    cache = Path(gradio_cache)
    if "gradio" in cache.name.lower() and cache.resolve() != Path(tempfile.gettempdir()).resolve():
        targets.append((cache, UPLOAD_MAX_AGE_S))
    return targets


__all__ = [
    "CLEAN_EVERY_S",
    "EXPORT_MAX_AGE_S",
    "UPLOAD_MAX_AGE_S",
    "Cleaner",
    "Removed",
    "app_targets",
    "export_root",
    "new_export_dir",
    "remove_older_than",
]
