"""Proof that the labels train a model: the exports of human-corrected labels go straight into TRL.

A tiny random-weight reward model (the tiny model fixture's config as a sequence classifier) trains
a few steps with TRL's ``RewardTrainer`` on the ``trl`` export, and the tiny causal model takes DPO
steps on the ``trl-conversational`` export. The issue's whole loop runs too: two annotators label an
overlapping set blind to each other, a reviewer adjudicates under versioned guidelines, and the
export of the result trains the reward model. Each test checks that the loss is finite and that the trainer read exactly
the rows the export wrote (same count, same texts in the same order, decoded from its tokens).

CPU only; TRL and accelerate come with the ``test`` extra (pyproject.toml).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, HumanLabel
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.services.exports import ExportFilters, export
from tests.conftest import llmbar_subset

trl = pytest.importorskip("trl", reason="TRL comes with the test extra: pip install -e '.[test]'")
N = 12


def _labelled_export(tmp_path: Path, shared_data: Path, fmt: str) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """LLMBar's first N pairs, one annotator labelling each (the opposite of gold on every third),
    exported as ``fmt``. Returns the export's rows and the (prompt, chosen, rejected) texts the
    labels call for, worked out here from the raw file."""
    raw = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:N]
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'train.db'}"))
    info = import_file(repo, llmbar_subset(shared_data, tmp_path, N), name="llmbar", mapping=PRESETS["llmbar"])
    expected = []
    for k, (stored, r) in enumerate(zip(repo.items(info.id), raw, strict=True)):
        first_better = (r["label"] == 1) != (k % 3 == 0)
        repo.add_label(HumanLabel("ann", stored.db_id, Choice.A if first_better else Choice.B))
        better, worse = (r["output_1"], r["output_2"]) if first_better else (r["output_2"], r["output_1"])
        expected.append((r["input"], better, worse))
    out = tmp_path / f"export.{fmt}.jsonl"
    summary = export(repo, fmt, out, ExportFilters(dataset="llmbar"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.written == len(rows) == N
    return rows, expected


def _load(rows: list[dict], columns: list[str]):  # noqa: ANN202
    from datasets import Dataset

    return Dataset.from_list([{c: r[c] for c in columns} for r in rows])


def _common_args() -> dict:
    return dict(
        per_device_train_batch_size=4, num_train_epochs=1, learning_rate=1e-3, logging_steps=1,
        report_to=[], use_cpu=True, save_strategy="no", seed=0, dataloader_num_workers=0,
        disable_tqdm=True, bf16=False, fp16=False,
    )  # fmt: skip


def _losses(trainer) -> list[float]:  # noqa: ANN001
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _train_reward_model(tiny_model: Path, tmp_path: Path, rows: list[dict], expected: list) -> object:
    """A few RewardTrainer steps on ``rows``; checks the trainer kept exactly them, in order, and the loss."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    config = AutoConfig.from_pretrained(tiny_model, num_labels=1)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)  # random weights, built offline
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_length=None, **_common_args())
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=_load(rows, ["prompt", "chosen", "rejected"]), processing_class=tok
    )
    # the trainer kept every row the export wrote (none dropped for length), texts in order
    seen = trainer.train_dataset
    assert len(seen) == len(expected)
    for ex, (prompt, better, worse) in zip(seen, expected, strict=True):
        assert better in tok.decode(ex["chosen_ids"], skip_special_tokens=True)
        assert worse in tok.decode(ex["rejected_ids"], skip_special_tokens=True)
        assert prompt in tok.decode(ex["chosen_ids"], skip_special_tokens=True)
    trainer.train()
    losses = _losses(trainer)
    assert trainer.state.global_step == math.ceil(len(expected) / 4) == len(losses)
    assert all(math.isfinite(v) for v in losses)
    return trainer


def test_reward_trainer_on_the_trl_export(tiny_model: Path, shared_data: Path, tmp_path: Path) -> None:
    rows, expected = _labelled_export(tmp_path, shared_data, "trl")
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == expected
    _train_reward_model(tiny_model, tmp_path, rows, expected)


def test_blind_overlap_adjudicated_under_guidelines_then_trained(
    tiny_model: Path, shared_data: Path, tmp_path: Path
) -> None:
    """The issue's loop: two annotators label an overlapping set blind to each other through the queue,
    a reviewer adjudicates their disagreements under versioned guidelines, and the export trains."""
    from rrm_ui.domain import QueueSpec, Role
    from rrm_ui.services import accounts, annotation, review

    raw = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:N]
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'loop.db'}"))
    info = import_file(repo, llmbar_subset(shared_data, tmp_path, N), name="llmbar", mapping=PRESETS["llmbar"])
    for name, role in (("ann", Role.ANNOTATOR), ("bob", Role.ANNOTATOR), ("rev", Role.REVIEWER)):
        accounts.add_user(repo, name, "correct horse battery", role)
    review.save_guidelines(repo, "llmbar", "# v1\n\nPrefer the response that follows the instruction.", None)
    spec = QueueSpec(info.id, overlap=2)
    by_ext = {it.item.id: (k, it) for k, it in enumerate(repo.items(info.id))}
    flips = {"ann": {k for k in range(N) if k % 4 == 0}, "bob": {k for k in range(N) if k % 3 == 0}}

    def gold_says_first(k: int) -> bool:
        return raw[k]["label"] == 1

    for who in ("ann", "bob"):
        while (task := annotation.next_task(repo, spec, who)) is not None:
            k, _ = by_ext[task.item.item.id]
            first = gold_says_first(k) != (k in flips[who])
            annotation.submit(repo, task, who, Choice.A if first else Choice.B, note=f"{who} on {k}")
        # blind to each other (overlap 2): each sees only their own labels
        shown = review.visible_labels(repo, repo.latest_labels(info.id), who, info.id, spec.overlap)
        assert set(shown["annotator"]) == {who}
    assert len(repo.latest_labels(info.id)) == 2 * N
    review.save_guidelines(repo, "llmbar", "# v2\n\nPrefer the response that follows the instruction; "
                           "length is no merit.", None)  # fmt: skip
    disagree = {k for k in range(N) if (k in flips["ann"]) != (k in flips["bob"])}
    queue = review.review_queue(repo, info.id, None, ("humans",))
    assert {by_ext[e.ext_id][0] for e in queue} == disagree
    for e in queue:  # the reviewer follows gold
        k = by_ext[e.ext_id][0]
        review.adjudicate(repo, "rev", e.item_db_id, e.pair, Choice.A if gold_says_first(k) else Choice.B, "v2 rule")
    assert {lb.guideline_version for _, _, lb in repo.labels_of(dataset_id=info.id)} == {1}
    # adjudicated pairs: now ann sees bob's labels on them, and only on them
    shown = review.visible_labels(repo, repo.latest_labels(info.id), "ann", info.id, spec.overlap)
    assert set(shown.loc[shown["annotator"] == "bob", "item_id"]) == {e.item_db_id for e in queue}
    out = tmp_path / "loop.trl.jsonl"
    summary = export(repo, "trl", out, ExportFilters(dataset="llmbar", fill_from="none"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # both flipped: the humans agree against gold and win; one flipped: adjudicated to gold; none: gold
    expected = []
    for k, r in enumerate(raw):
        first = gold_says_first(k) != (k in flips["ann"] and k in flips["bob"])
        better, worse = (r["output_1"], r["output_2"]) if first else (r["output_2"], r["output_1"])
        expected.append((r["input"], better, worse))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == expected
    assert dict(summary.sources) == {"adjudicated": len(disagree), "human": N - len(disagree)}
    _train_reward_model(tiny_model, tmp_path, rows, expected)


def test_dpo_on_the_conversational_export(tiny_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rows, expected = _labelled_export(tmp_path, shared_data, "trl-conversational")
    for r, (prompt, better, worse) in zip(rows, expected, strict=True):
        assert r["prompt"] == [{"role": "user", "content": prompt}]
        assert r["chosen"] == [{"role": "assistant", "content": better}]
        assert r["rejected"] == [{"role": "assistant", "content": worse}]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=None, **_common_args())
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=_load(rows, ["prompt", "chosen", "rejected"]), processing_class=tok
    )
    seen = trainer.train_dataset
    assert len(seen) == N
    for ex, (prompt, better, worse) in zip(seen, expected, strict=True):
        assert prompt in tok.decode(ex["prompt_ids"], skip_special_tokens=True)
        chosen = tok.decode(ex["chosen_ids"], skip_special_tokens=True)
        rejected = tok.decode(ex["rejected_ids"], skip_special_tokens=True)
        assert better in chosen and worse in rejected
    trainer.train()
    losses = _losses(trainer)
    assert trainer.state.global_step == math.ceil(N / 4) == len(losses)
    assert all(math.isfinite(v) for v in losses)
