"""Adjudication, labelling guidelines, and annotators blind to each other.

Who may do what (checked here, whichever way a request comes: the Review tab, the CLI):
- **adjudicate** (set a pair's final label, with a reason): reviewers and admins; in local
  single-user mode (no account has a password) the one local user;
- **edit guidelines** and a data set's **blind** setting: admins (the CLI, which is run by whoever
  holds the database, too);
- **see other annotators' labels and notes**: reviewers and admins always; an annotator, on a data set
  that is blind to each other, only their own until the pair is adjudicated; where the setting is off,
  everyone (the research view).

Blind to each other is a per-data-set setting; unset, it is on when the app serves each item to more
than one annotator (an overlap above 1).

The review queue lists pairs whose labels call for a reviewer: annotators disagree with each other
(``humans``), a human disagrees with the model's run (``model``) or with gold (``gold``), or a label
carries a note (``note``). Adjudicated pairs leave the queue unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from rrm_ui.domain import Account, Adjudication, Choice, Guidelines, Judgment, StoredItem
from rrm_ui.storage import Repository

REASONS = {
    "humans": "annotators disagree with each other",
    "model": "a human disagrees with the model",
    "gold": "a human disagrees with gold",
    "note": "a label carries a note",
}
MAX_GUIDELINES = 200_000  # characters of Markdown


# --- who may ---------------------------------------------------------------------------------------


def _viewer(repo: Repository, name: str) -> Account | None:
    """The account asking; None in local single-user mode (no account can log in: full rights)."""
    if not repo.has_accounts():
        return None
    account = repo.account(name)
    if account is None:
        raise PermissionError(f"no account named {name!r}")
    return account


def can_review(repo: Repository, name: str) -> bool:
    viewer = _viewer(repo, name)
    return viewer is None or viewer.can_review


def _require_reviewer(repo: Repository, name: str) -> None:
    if not can_review(repo, name):
        raise PermissionError(f"{name!r} is an annotator: only reviewers and admins adjudicate "
                              "(rrm-ui users add NAME --reviewer)")  # fmt: skip


def _require_admin(repo: Repository, name: str | None) -> None:
    if name is None:  # the command line
        return
    viewer = _viewer(repo, name)
    if viewer is not None and viewer.role.value != "admin":
        raise PermissionError(f"only admins change a data set's guidelines and settings; {name!r} is a "
                              f"{viewer.role.value}")  # fmt: skip


# --- adjudication ----------------------------------------------------------------------------------


def adjudicate(
    repo: Repository, reviewer: str, item_db_id: int, pair: tuple[int, int], choice: Choice, reason: str
) -> int:
    """Store the final label of the item's pair (``Choice.A``: ``pair[0]`` is better) with its reason.

    Append-only: a second adjudication of the pair becomes the final one, the first stays in the history.
    """
    _require_reviewer(repo, reviewer)
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("say why: an adjudication needs a reason")
    item = repo.item(item_db_id)
    if item is None:
        raise ValueError(f"no item with id {item_db_id}")
    i, j = pair
    n = len(item.item.responses)
    if not (0 <= i < n and 0 <= j < n and i != j):
        raise ValueError(f"pair {pair} is not two different responses of an item with {n}")
    return repo.add_adjudication(Adjudication(item_db_id, i, j, Choice(choice), reason, reviewer))


def canonical(i: int, j: int, choice: str) -> tuple[tuple[int, int], str]:
    """A pair keyed with i < j; a choice about (j, i) is mirrored."""
    if i < j:
        return (i, j), choice
    return (j, i), {"A": "B", "B": "A"}.get(choice, choice)


def final_labels(repo: Repository, dataset_id: int) -> dict[tuple[int, int, int], dict[str, Any]]:
    """The latest adjudication per (item, i, j) with i < j: choice (about i vs j), reason, reviewer, id."""
    frame = repo.latest_adjudications(dataset_id)
    out: dict[tuple[int, int, int], dict[str, Any]] = {}
    for r in frame.sort_values("id").to_dict("records"):  # a pair stored both ways: the newest wins
        (i, j), choice = canonical(int(r["pair_i"]), int(r["pair_j"]), r["choice"])
        out[(int(r["item_id"]), i, j)] = {"choice": choice, "reason": r["reason"], "reviewer": r["reviewer"],
                                          "id": int(r["id"])}  # fmt: skip
    return out


@dataclass(frozen=True)
class QueueEntry:
    item_db_id: int
    ext_id: str
    pair: tuple[int, int]
    reasons: tuple[str, ...]  # keys of REASONS
    human: dict[str, str]  # annotator -> choice about pair (latest labels)
    model: str | None  # the run's choice on the pair
    gold: str | None
    final: str | None  # the adjudicated choice, if any


def review_queue(
    repo: Repository,
    dataset_id: int,
    run_id: int | None,
    reasons: tuple[str, ...] = ("humans",),
    *,
    include_adjudicated: bool = False,
) -> list[QueueEntry]:
    """Pairs that match any of ``reasons`` (keys of :data:`REASONS`), by item and pair."""
    from rrm_ui.services.exports import gold_choice, model_choices  # the export's reading of runs and gold

    unknown = set(reasons) - set(REASONS)
    if unknown:
        raise ValueError(f"unknown review filter {sorted(unknown)}; choose from {', '.join(REASONS)}")
    items = {it.db_id: it for it in repo.items(dataset_id)}
    labels = repo.latest_labels(dataset_id)
    human: dict[tuple[int, int, int], dict[str, str]] = {}
    noted: set[tuple[int, int, int]] = set()
    for r in labels.to_dict("records"):
        (i, j), choice = canonical(int(r["pair_i"]), int(r["pair_j"]), r["choice"])
        key = (int(r["item_id"]), i, j)
        human.setdefault(key, {})[r["annotator"]] = choice
        if isinstance(r["note"], str) and r["note"].strip():
            noted.add(key)
    model = model_choices(repo, dataset_id, run_id) if run_id is not None else {}
    final = final_labels(repo, dataset_id)
    out = []
    for key in sorted(human):
        item_id, i, j = key
        choices = human[key]
        m_choice = (model.get(key) or {}).get("choice")
        g_choice = gold_choice(items[item_id], i, j)
        found = []
        if len(set(choices.values())) > 1:
            found.append("humans")
        if m_choice is not None and any(c != m_choice for c in choices.values()):
            found.append("model")
        if g_choice is not None and any(c != g_choice for c in choices.values()):
            found.append("gold")
        if key in noted:
            found.append("note")
        hit = tuple(r for r in found if r in reasons)
        done = final.get(key)
        if not hit or (done is not None and not include_adjudicated):
            continue
        out.append(QueueEntry(item_id, items[item_id].item.id, (i, j), hit, dict(sorted(choices.items())), m_choice,
                              g_choice, done["choice"] if done else None))  # fmt: skip
    return out


@dataclass(frozen=True)
class ReviewLabel:
    annotator: str
    choice: str  # about the reviewed pair as (i, j)
    note: str | None
    guideline_version: int | None
    created_at: Any
    latest: bool  # the annotator's latest label on the pair (earlier ones are history)


@dataclass(frozen=True)
class ReviewItem:
    """Everything a reviewer sees about one pair."""

    item: StoredItem
    pair: tuple[int, int]
    labels: tuple[ReviewLabel, ...]  # every label on the pair, oldest first
    model: str | None  # the run's choice on the pair
    votes: dict[int, int]
    judgments: tuple[Judgment, ...]  # the run's traces of the pair, both orders
    gold: str | None
    history: tuple[Adjudication, ...]  # adjudications of the pair, oldest first (the last one is final)


def review_item(repo: Repository, item_db_id: int, pair: tuple[int, int], run_id: int | None) -> ReviewItem:
    from rrm_ui.services.exports import gold_choice, model_pairs

    item = repo.item(item_db_id)
    if item is None:
        raise ValueError(f"no item with id {item_db_id}")
    i, j = sorted(pair)
    rows = [r for r in repo.labels_of(item_db_id=item_db_id) if {r[2].pair_i, r[2].pair_j} == {i, j}]
    latest = {lb.annotator: label_id for label_id, _at, lb in rows}
    labels = tuple(
        ReviewLabel(lb.annotator, canonical(lb.pair_i, lb.pair_j, lb.choice.value)[1], lb.note, lb.guideline_version,
                    at, latest[lb.annotator] == label_id)
        for label_id, at, lb in rows
    )  # fmt: skip
    m_choice, votes, judgments = None, {}, ()
    if run_id is not None:
        row = repo.latest_result_row(run_id, item_db_id)
        if row is not None:
            info = model_pairs({**row, "item_id": item_db_id}).get((item_db_id, i, j)) or {}
            m_choice, votes = info.get("choice"), info.get("votes", {})
        judgments = tuple(repo.pair_judgments(run_id, item_db_id, i, j))
    history = tuple(
        Adjudication(a.item_db_id, i, j, Choice(canonical(a.pair_i, a.pair_j, a.choice.value)[1]), a.reason,
                     a.reviewer, a.id, a.created_at)
        for a in repo.adjudications_of(item_db_id=item_db_id)
        if {a.pair_i, a.pair_j} == {i, j}
    )  # fmt: skip
    return ReviewItem(item, (i, j), labels, m_choice, votes, judgments, gold_choice(item, i, j), history)


# --- guidelines ------------------------------------------------------------------------------------


def save_guidelines(repo: Repository, dataset: str, text: str, author: str | None) -> Guidelines:
    """A new version of the data set's guidelines (``author`` None: the command line). Admins only."""
    _require_admin(repo, author)
    info = repo.dataset(dataset)
    if info is None:
        known = ", ".join(d.name for d in repo.datasets()) or "none"
        raise ValueError(f"no data set named {dataset!r} (data sets: {known})")
    if not text.strip():
        raise ValueError("the guidelines are empty")
    if len(text) > MAX_GUIDELINES:
        raise ValueError(f"the guidelines have {len(text):,} characters; at most {MAX_GUIDELINES:,}")
    current = repo.guidelines(info.id)
    if current is not None and current.text == text:
        return current  # unchanged: no new version
    return repo.save_guidelines(info.id, text, author)


def guidelines(repo: Repository, dataset_id: int, version: int | None = None) -> Guidelines | None:
    return repo.guidelines(dataset_id, version)


# --- blind to each other ---------------------------------------------------------------------------


def is_blind(repo: Repository, dataset_id: int, overlap: int) -> bool:
    """Whether the data set's annotators are blind to each other (unset: on when ``overlap`` > 1)."""
    stored = repo.dataset_blind(dataset_id)
    return overlap > 1 if stored is None else bool(stored)


def set_blind(repo: Repository, dataset: str, blind: bool | None, actor: str | None) -> None:
    """Set (True/False) or unset (None: follow the overlap) the data set's blind setting. Admins only."""
    _require_admin(repo, actor)
    info = repo.dataset(dataset)
    if info is None:
        raise ValueError(f"no data set named {dataset!r}")
    repo.set_dataset_blind(info.id, blind)


def sees_everyone(repo: Repository, viewer: str, dataset_id: int, overlap: int) -> bool:
    """Whether ``viewer`` sees every annotator's labels and notes on the data set's items."""
    return can_review(repo, viewer) or not is_blind(repo, dataset_id, overlap)


def visible_labels(repo: Repository, labels: pd.DataFrame, viewer: str, dataset_id: int, overlap: int) -> pd.DataFrame:
    """``labels`` (rows with ``annotator``, ``item_id``, ``pair_i``, ``pair_j``) as ``viewer`` may see them:
    all of them, or, blind to each other, the viewer's own and those on adjudicated pairs."""
    if labels.empty or sees_everyone(repo, viewer, dataset_id, overlap):
        return labels
    final = final_labels(repo, dataset_id)
    keep = [
        a == viewer or (int(it), *sorted((int(i), int(j)))) in final
        for a, it, i, j in labels[["annotator", "item_id", "pair_i", "pair_j"]].itertuples(index=False)
    ]
    return labels[keep]


def blind_scope(repo: Repository, viewer: str, overlap: int) -> dict[str, set[int]]:
    """For each data set ``viewer`` is blind on (by name): the items with an adjudicated pair, whose labels
    they may see. Empty for reviewers and admins, and where no data set is blind."""
    if can_review(repo, viewer):
        return {}
    out = {}
    for ds in repo.datasets():
        if is_blind(repo, ds.id, overlap):
            out[ds.name] = {item for item, _i, _j in final_labels(repo, ds.id)}
    return out


#: Explorer filters that read other annotators' labels (analysis.explorer.FLAGS)
HUMAN_FLAGS = frozenset({"disagree_human", "labelled", "unlabelled", "disagree_majority", "no_majority"})


def check_blind_filters(
    repo: Repository,
    viewer: str,
    dataset: str | None,
    overlap: int,
    *,
    annotator: str | None = None,
    flags: tuple[str, ...] = (),
    reference: str | None = None,
) -> None:
    """Refuse Explorer filters that would show ``viewer`` other annotators' labels where they are blind
    to them: another annotator's name, a flag about the humans' labels, a reference other than gold or
    their own labels (a chart's drill)."""
    wrong = []
    if annotator not in (None, viewer):
        wrong.append(f"annotator {annotator!r}")
    wrong += [f"the flag {f!r}" for f in flags if f in HUMAN_FLAGS]
    if reference not in (None, "gold", viewer):
        wrong.append(f"the reference {reference!r}")
    if not wrong:
        return
    scope = blind_scope(repo, viewer, overlap)
    if scope and (dataset is None or dataset in scope):
        where = f"data set {dataset!r} is" if dataset else "some data sets are"
        raise PermissionError(
            f"{where} blind to each other: you see only your own labels until a reviewer adjudicates, so "
            f"{' and '.join(wrong)} cannot be used; filter by your own name or gold, or choose a data set "
            "that is not blind"
        )


# --- human-overturnable knockouts ----------------------------------------------------------------


@dataclass(frozen=True)
class BracketReview:
    """A list item's knockout as the run played it and as replayed with the humans' decisions."""

    item: StoredItem
    run_id: int
    model: Any  # engine.replay.Replay of the run's own outcomes (the bracket as judged)
    corrected: Any  # engine.replay.Replay with adjudications first: the human decision
    overturned: tuple[tuple[int, int], ...]  # pairs the run decided that a human decided otherwise


def review_bracket(repo: Repository, item_db_id: int, run_id: int) -> BracketReview:
    """Replay the run's knockout of a list item with every adjudicated pair of the item as the human's
    decision of that match (a reviewer overturns a match by adjudicating its pair). The corrected
    bracket is derived from the stored adjudications, so it changes as they do and keeps their history;
    a match the replay needs that nobody decided is listed as pending (adjudicate it to go on)."""
    from rrm_ui.engine.replay import PENDING, entry_order, replay_knockout

    item = repo.item(item_db_id)
    if item is None:
        raise ValueError(f"no item with id {item_db_id}")
    row = repo.latest_result_row(run_id, item_db_id)
    bracket = row["bracket"] if row is not None else []
    if row is None or not bracket:
        raise ValueError(f"the run has no knockout bracket for item {item.item.id!r} (a list item judged with "
                         "--strategy knockout)")  # fmt: skip
    model = {}
    for p in row["pairs"]:
        i, j = sorted((int(p["i"]), int(p["j"])))
        model[(i, j)] = p.get("winner")
    dataset_id = _dataset_id(repo, item_db_id)
    human = {(i, j): adj["choice"] for (it, i, j), adj in final_labels(repo, dataset_id).items() if it == item_db_id}

    def by_model(a: int, b: int) -> tuple[Any, str]:
        key = (min(a, b), max(a, b))
        return (model[key], "model") if key in model else (PENDING, "")

    def with_humans(a: int, b: int) -> tuple[Any, str]:
        key = (min(a, b), max(a, b))
        if key in human:
            choice = human[key]
            return (key[0] if choice == "A" else key[1] if choice == "B" else None), "human"
        return by_model(a, b)

    order = entry_order(bracket)
    overturned = tuple(k for k, c in sorted(human.items()) if k in model and
                       (k[0] if c == "A" else k[1] if c == "B" else None) != model[k])  # fmt: skip
    return BracketReview(
        item, run_id, replay_knockout(order, by_model), replay_knockout(order, with_humans), overturned
    )


@dataclass(frozen=True)
class RoundRobinReview:
    """A list item's round robin as the run rated it and as refit with the humans' decisions."""

    item: StoredItem
    run_id: int
    model: Any  # engine.tournament.Ratings of the run's own matches
    corrected: Any  # engine.tournament.Ratings with the adjudicated pairs as the human decision
    overturned: tuple[tuple[int, int], ...]  # pairs whose winner a human changed (or decided first)


def review_round_robin(repo: Repository, item_db_id: int, run_id: int) -> RoundRobinReview:
    """Refit the run's round robin of a list item with every adjudicated pair of the item as the human's
    decision of that match (``A``: the pair's first response wins, ``B``: the second, ``tie`` and
    ``both_bad``: a tie): the ratings (Bradley-Terry, Elo, the paper's Elo) and the ranking, by the same
    rule as the run's. Derived from the stored adjudications, like :func:`review_bracket`."""
    from rrm_ui.engine.replay import refit_round_robin

    item = repo.item(item_db_id)
    if item is None:
        raise ValueError(f"no item with id {item_db_id}")
    row = repo.latest_result_row(run_id, item_db_id)
    if row is None or row.get("strategy") != "round-robin" or not row.get("pairs"):
        raise ValueError(f"the run has no round robin for item {item.item.id!r} (a list item judged with "
                         "--strategy round-robin)")  # fmt: skip
    model = {}
    for p in row["pairs"]:
        i, j = sorted((int(p["i"]), int(p["j"])))
        w = p.get("winner")
        model[(i, j)] = None if w is None else int(w)
    dataset_id = _dataset_id(repo, item_db_id)
    human = {(i, j): i if adj["choice"] == "A" else j if adj["choice"] == "B" else None
             for (it, i, j), adj in final_labels(repo, dataset_id).items() if it == item_db_id}  # i < j
    n = len(item.item.responses)
    corrected, overturned = refit_round_robin(n, model, human)
    return RoundRobinReview(item, run_id, refit_round_robin(n, model, {})[0], corrected, overturned)


def _dataset_id(repo: Repository, item_db_id: int) -> int:
    from rrm_ui.storage.models import Item

    return int(repo.frame("items", [Item.id == item_db_id])["dataset_id"].iat[0])


# --- per-criterion labels --------------------------------------------------------------------------

MAX_CRITERIA = 6
CRITERION_CHOICES = (Choice.A, Choice.B, Choice.TIE)


def set_criteria(repo: Repository, dataset: str, names: list[str], actor: str | None) -> tuple[str, ...]:
    """Name the data set's criteria (an empty list: none). Admins only; names are kept in order, each
    1-50 characters, at most :data:`MAX_CRITERIA`, no repeats. Labels on a dropped criterion stay."""
    _require_admin(repo, actor)
    info = repo.dataset(dataset)
    if info is None:
        raise ValueError(f"no data set named {dataset!r}")
    cleaned = tuple(n.strip() for n in names if n.strip())
    if len(cleaned) > MAX_CRITERIA:
        raise ValueError(f"{len(cleaned)} criteria; at most {MAX_CRITERIA}")
    if len(set(cleaned)) != len(cleaned):
        raise ValueError(f"a criterion is named twice: {', '.join(cleaned)}")
    long = [n for n in cleaned if len(n) > 50]
    if long:
        raise ValueError(f"criterion names have at most 50 characters: {long[0][:60]!r}")
    repo.set_dataset_criteria(info.id, cleaned)
    return cleaned


def label_criteria(
    repo: Repository, annotator: str, item_db_id: int, pair: tuple[int, int], choices: dict[str, Choice | str | None]
) -> list[int]:
    """Store the annotator's per-criterion choices (A / B / tie) on the item's pair; criteria left
    without a choice are not stored. Refused: a criterion the data set does not define, another choice."""
    item = repo.item(item_db_id)
    if item is None:
        raise ValueError(f"no item with id {item_db_id}")
    defined = repo.dataset_criteria(_dataset_id(repo, item_db_id))
    given = {}
    for name, choice in choices.items():
        if choice in (None, ""):
            continue
        if name not in defined:
            raise ValueError(f"criterion {name!r} is not one of this data set's ({', '.join(defined) or 'none'})")
        value = Choice(choice)
        if value not in CRITERION_CHOICES:
            raise ValueError(f"a criterion is labelled A, B or tie, not {value.value!r}")
        given[name] = value
    if not given:
        return []
    return repo.add_criterion_labels(annotator, item_db_id, pair, given)


def criterion_agreement(repo: Repository, dataset_id: int) -> pd.DataFrame:
    """Agreement between annotators per criterion (:func:`rrm_ui.analysis.criteria.criterion_agreement`)."""
    from rrm_ui.analysis.criteria import criterion_agreement as agreement

    return agreement(repo.latest_criterion_labels(dataset_id), repo.dataset_criteria(dataset_id))
