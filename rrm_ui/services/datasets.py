"""Data sets: import a file, attach human labels and other judges' verdicts later, write rejects.

Every step validates the whole file first and writes in one transaction, or writes nothing.
With ``skip_invalid`` the records with a problem are left out instead and returned, each with
its line and reason, so that the caller can write them to a rejects file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrm_ui.domain import DatasetInfo, Rejected, RunInfo
from rrm_ui.io.importers import ExternalVerdicts, LabelFile, default_name, item_refs, read_dataset, read_labels
from rrm_ui.io.importers import read_verdicts as read_verdict_file
from rrm_ui.storage import Repository


@dataclass(frozen=True)
class Imported:
    """What an import stored, and what it skipped."""

    info: DatasetInfo
    rejects: tuple[Rejected, ...] = ()


@dataclass(frozen=True)
class Attached:
    """What attaching a labels or verdicts file to a data set stored, and what it skipped."""

    dataset: str
    what: str  # "labels" or "verdicts"
    stored: int  # labels stored, or verdicts stored (a "no verdict" row counts)
    annotators: tuple[str, ...] = ()
    run: RunInfo | None = None
    no_verdict: int = 0
    rejects: tuple[Rejected, ...] = ()

    def describe(self) -> str:
        if self.what == "labels":
            who = ", ".join(self.annotators) or "nobody"
            text = f"attached {self.stored} label(s) by {who} to data set {self.dataset!r}"
        else:
            assert self.run is not None
            text = f"attached {self.stored} verdict(s) to data set {self.dataset!r} as external run {self.run.name!r}"
            if self.no_verdict:
                text += f" ({self.no_verdict} of them 'no verdict')"
        if self.rejects:
            text += f"; {len(self.rejects)} row(s) skipped"
        return text


def import_file(repo: Repository, path: str | Path, **options: Any) -> DatasetInfo:
    """Validate the whole file, then store it; on any error nothing is written."""
    return repo.create_dataset(read_dataset(path, **options))


def import_with_rejects(repo: Repository, path: str | Path, **options: Any) -> Imported:
    """:func:`import_file` that also returns the records it skipped (``skip_invalid=True`` in options)."""
    ds = read_dataset(path, **options)
    return Imported(repo.create_dataset(ds), ds.rejects)


def _stored(repo: Repository, name: str) -> DatasetInfo:
    found = repo.dataset(name)
    if found is None:
        known = ", ".join(d.name for d in repo.datasets()) or "none yet"
        raise ValueError(f"no data set named {name!r} (data sets: {known}); import one with `rrm-ui import FILE`")
    return found


def attach_labels(
    repo: Repository, dataset: str, spec: LabelFile, *, skip_invalid: bool = False, max_bytes: int = 512 * 1024**2
) -> Attached:
    """Append the human labels of ``spec`` to the stored data set ``dataset`` (history is kept: a
    later label of the same annotator on the same item becomes their latest)."""
    info = _stored(repo, dataset)
    index = item_refs(repo.item_keys(info.id), info.format)
    labels, rejects = read_labels(spec, index, max_bytes=max_bytes, skip_invalid=skip_invalid)
    n = repo.attach_labels(info.id, labels)
    return Attached(info.name, "labels", n, tuple(sorted({lb.annotator for lb in labels})), rejects=rejects)


def attach_verdicts(
    repo: Repository,
    dataset: str,
    spec: ExternalVerdicts,
    *,
    skip_invalid: bool = False,
    max_bytes: int = 512 * 1024**2,
) -> Attached:
    """Store another judge's verdicts on the stored data set ``dataset`` as the new external run ``spec.run``."""
    info = _stored(repo, dataset)
    if any(r.name == spec.run for r in repo.runs(info.id)):
        raise ValueError(f"data set {info.name!r} has a run named {spec.run!r} already; choose another run name")
    index = item_refs(repo.item_keys(info.id), info.format)
    verdicts, rejects = read_verdict_file(spec, index, max_bytes=max_bytes, skip_invalid=skip_invalid)
    run = repo.attach_external_run(info.id, spec.run, verdicts)
    none = sum(v.choice is None and not v.ranking for v in verdicts)
    return Attached(info.name, "verdicts", len(verdicts), run=run, no_verdict=none, rejects=rejects)


def write_rejects(path: str | Path, rejects: tuple[Rejected, ...]) -> Path:
    """Write skipped records as JSON Lines: ``{"line" or "row": N, "field", "reason", "record"}``."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for r in rejects:
            out.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    return path


def default_rejects_path(name: str, folder: str | Path = ".") -> Path:
    """Where a rejects file goes by default: ``<name>.rejects.jsonl`` in ``folder`` (the current one)."""
    return Path(folder) / f"{name}.rejects.jsonl"


def ensure_dataset(repo: Repository, path: str | Path | None, name: str | None) -> DatasetInfo:
    """The data set to judge: a stored one by name, or a file imported under its name (once).

    Giving the same file again finds the data set imported the first time, so a judging command
    can simply be run again to continue.
    """
    if path is None:
        if name is None:
            raise ValueError("give an input FILE or --dataset NAME")
        return _stored(repo, name)
    name = name or default_name(path)
    found = repo.dataset(name)
    if found is None:
        return import_file(repo, path, name=name)
    if found.source != str(Path(path).resolve()):
        raise ValueError(
            f"a data set named {name!r} was imported from {found.source}, not {path}; pass --dataset with another name"
        )
    return found
