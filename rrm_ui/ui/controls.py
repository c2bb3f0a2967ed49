"""Compute controls the Judge and Batch tabs share: the thinking-budget slider and the form's Compute."""

from __future__ import annotations

import gradio as gr

from rrm_ui.config import Settings
from rrm_ui.domain import Compute

MIN_BUDGET, MAX_BUDGET, BUDGET_STEP = 256, 32768, 256


def budget_slider(settings: Settings, elem_id: str) -> gr.Slider:
    """The thinking budget (``max_tokens``), starting at the configured default."""
    return gr.Slider(MIN_BUDGET, MAX_BUDGET, value=settings.max_tokens, step=BUDGET_STEP,
                     label="Thinking budget (tokens)", elem_id=elem_id)  # fmt: skip


def compute_from_form(votes: float, swap: bool, adaptive: bool) -> Compute:
    """The form's compute; adaptive mode may spend up to two samples per vote on a pair."""
    return Compute(votes=int(votes), swap=bool(swap), adaptive=bool(adaptive), budget=max(2, 2 * int(votes)))
