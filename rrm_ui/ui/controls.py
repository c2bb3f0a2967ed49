"""Compute controls the Judge, Batch and Explorer tabs share: the thinking budget and the form's Compute."""

from __future__ import annotations

import gradio as gr

from rrm_ui.config import Settings
from rrm_ui.domain import Compute
from rrm_ui.services.judging import judge_choices

MIN_BUDGET, MAX_BUDGET = 1, 32768


def max_budget(settings: Settings) -> int:
    """The largest thinking budget the forms take: 32,768 tokens, or the configured default if larger."""
    return max(MAX_BUDGET, int(settings.max_tokens))


def budget_input(settings: Settings, elem_id: str) -> gr.Number:
    """The thinking budget (``max_tokens``), starting at the configured default.

    A number box without bounds of its own: a slider's box clamps a typed value on blur (64 became
    256 without a word), so the range is checked by :func:`check_budget` and refused with a message.
    """
    return gr.Number(value=settings.max_tokens, precision=0, elem_id=elem_id,
                     label=f"Thinking budget (tokens, {MIN_BUDGET:,}–{max_budget(settings):,})")  # fmt: skip


def check_budget(value: float | None, settings: Settings) -> int:
    """The typed thinking budget as a whole number of tokens; ValueError naming the range when it is
    empty, not whole or outside it (never clamped)."""
    top = max_budget(settings)
    wanted = f"a whole number of tokens from {MIN_BUDGET:,} to {top:,}"
    if value is None or value != value:  # empty box (None) or NaN
        raise ValueError(f"the thinking budget is empty: give {wanted}")
    if float(value) != int(value) or not MIN_BUDGET <= int(value) <= top:
        raise ValueError(f"the thinking budget must be {wanted}, not {value:g}")
    return int(value)


def escalate_input(elem_id: str) -> gr.Number:
    """Adaptive escalation's cap (``--escalate-to``): 0 or empty for none."""
    return gr.Number(value=0, precision=0, elem_id=elem_id,
                     label="Adaptive: raise the thinking budget of split pairs up to (tokens; 0: never)")  # fmt: skip


def check_escalate(value: float | None, settings: Settings) -> int | None:
    """The typed escalation cap: None for 0 or an empty box, else a thinking budget as :func:`check_budget`
    takes it (the JudgeSpec then refuses one at or below the run's budget)."""
    if value is None or value != value or value == 0:
        return None
    try:
        return check_budget(value, settings)
    except ValueError as exc:
        raise ValueError(str(exc).replace("the thinking budget", "the escalation cap", 1)) from None


MIN_VOTES, MAX_VOTES = 1, 8


def votes_input(elem_id: str | None = None, value: int = 1) -> gr.Number:
    """Votes per order: a number box checked by :func:`check_votes` (a slider's box clamps a typed 20 to 8)."""
    return gr.Number(value=value, precision=0, elem_id=elem_id, label=f"Votes per order ({MIN_VOTES}–{MAX_VOTES})")


def check_votes(value: float | None) -> int:
    """The typed votes per order as a whole number; ValueError naming the range when it is empty, not
    whole or outside it (never clamped)."""
    wanted = f"a whole number from {MIN_VOTES} to {MAX_VOTES}"
    if value is None or value != value:
        raise ValueError(f"votes per order is empty: give {wanted}")
    if float(value) != int(value) or not MIN_VOTES <= int(value) <= MAX_VOTES:
        raise ValueError(f"votes per order must be {wanted}, not {value:g}")
    return int(value)


#: the order menu's words -> ``Compute.order``
ORDER_CHOICES = {"as listed": "given", "shuffled per vote (RRM paper)": "shuffled"}
#: the stopping menu's words -> ``Compute.stopping``
STOPPING_CHOICES = {"margin of 2 votes": "margin", "Beta posterior 0.95 (Adaptive-Consistency)": "beta"}


def order_menu(elem_id: str) -> gr.Dropdown:
    """One order per vote: as listed, or each vote in its own seeded order (``--order``)."""
    return gr.Dropdown(list(ORDER_CHOICES), value=next(iter(ORDER_CHOICES)), label="Order of each vote "
                       "(without both orders)", elem_id=elem_id)  # fmt: skip


def stopping_menu(elem_id: str) -> gr.Dropdown:
    """Adaptive's stopping rule (``--stopping``), with Compute's default margin and confidence."""
    return gr.Dropdown(list(STOPPING_CHOICES), value=next(iter(STOPPING_CHOICES)), label="Adaptive stops at",
                       elem_id=elem_id)  # fmt: skip


def compute_from_form(votes: float, swap: bool, adaptive: bool, order: str | None = None,
                      stopping: str | None = None, escalate_to: int | None = None) -> Compute:  # fmt: skip
    """The form's compute (votes checked by :func:`check_votes`); an adaptive pair's budget is Compute's own
    default (``domain.default_budget``: two samples per vote, at least 8), the same as ``rrm-ui judge
    --adaptive`` without ``--budget``. ``order`` and ``stopping`` are the menus' words (or the values);
    a shuffled order is judged only without both orders (with them, both orders of every vote are).
    ``escalate_to``: :func:`check_escalate`'s cap (adaptive only; Compute refuses it otherwise)."""
    order_value = ORDER_CHOICES.get(order or "", order or "given")
    if swap:
        order_value = "given"
    stopping_value = STOPPING_CHOICES.get(stopping or "", stopping or "margin")
    return Compute(votes=check_votes(votes), swap=bool(swap), adaptive=bool(adaptive), order=order_value,
                   stopping=stopping_value, escalate_to=escalate_to)  # fmt: skip


def judge_menu(settings: Settings, elem_id: str) -> gr.Dropdown:
    """The judge format, by name with its one-line description; starts at the configured one
    (``--judge`` / ``RRM_UI_JUDGE_FORMAT``). The name goes into the run's spec and name."""
    return gr.Dropdown(judge_choices(), value=settings.judge_format, label="Judge format", elem_id=elem_id)
