"""The interface every judge prompt format implements, and helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from rrm_ui.domain import Choice, ParsedVerdict, Status, Verdict

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# How a format's paper scored an output its parser could not read (``JudgeFormat.error_score``).
ERROR_HALF = "0.5"  # counted as half right, a tie (RewardBench's ``process_shuffled``)
ERROR_ZERO = "0"  # counted as wrong (RM-R1's ``process_shuffled``)
ERROR_TIE = "tie"  # the parser itself returns a tie (PandaLM's ``parse_pandalm_response``)
ERROR_DROPPED = "dropped"  # the match is left out (FastChat's ``show_result``)
ERROR_UNDEFINED = "undefined"  # the official evaluation has no rule for it (Auto-J asserts a label)


@dataclass(frozen=True)
class Source:
    """Where a format's official prompt and parser live: repository, file(s), commit read."""

    repo: str
    path: str
    commit: str
    note: str = ""  # what was reconstructed or differs, if anything


@dataclass(frozen=True)
class Decoding:
    """The decoding of a format's official code (what it passes to vLLM / ``generate``)."""

    temperature: float
    top_p: float
    max_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. beams, repetition penalty


@dataclass(frozen=True)
class Reading:
    """What a format's official parser made of an output.

    ``choice`` is A, B or TIE (None: the parser found no verdict); ``status`` says why there is
    none; ``extracted`` is the piece of text the rule decided on (a marker, a box's content, the
    two scores), for display.
    """

    choice: Choice | None
    status: Status
    extracted: str | None = None

    def parsed(self) -> ParsedVerdict:
        """The engine's view: A/B as verdicts; a tie is status ok with no verdict (``boxed`` "tie")."""
        if self.choice is Choice.A:
            return ParsedVerdict(Status.OK, Verdict.A, None, self.extracted)
        if self.choice is Choice.B:
            return ParsedVerdict(Status.OK, Verdict.B, None, self.extracted)
        if self.choice is Choice.TIE:
            return ParsedVerdict(Status.OK, None, None, "tie")
        return ParsedVerdict(self.status, None, None, self.extracted)


def full_text(reasoning: str, answer: str, think_closed: bool) -> str:
    """The generated text put back together from its split at ``</think>``.

    For formats whose official parser reads the whole output (``JudgeFormat.thinks`` is False,
    or a reasoning judge whose parser ignores the think block). A ``<think>`` the model wrote
    as its very first token was dropped by the split and is not restored.
    """
    return reasoning + THINK_CLOSE + answer if think_closed else reasoning


class JudgeFormat(ABC):
    """A judge prompt: rendering a pair into chat messages, and reading a verdict back.

    ``name`` and ``version`` are stored on every judgment so that judgments made with
    different prompts are never mixed silently. Bump ``version`` whenever the rendered
    bytes or the parsing rule change.
    """

    name: str
    version: str
    # Every format declares these (docs/judges.md lists them); the defaults are the RRM's.
    description: str = ""  # one line, for --help and the menus
    can_tie: bool = False  # whether the parser can return a tie
    error_score: str = ERROR_HALF  # how its paper scored an unreadable output (ERROR_*)
    default_sampling: Decoding | None = None  # the official code's decoding
    system_prompt: str | None = None  # the system message it sends, "" for an empty one, None: none
    source: Source | None = None
    thinks: bool = True  # the output starts inside a think block (parse reads the split)
    games: int = 1  # 2: the official protocol always judges both orders (FastChat)
    uses_chat_template: bool = True  # False: send raw_prompt() as a completion prompt
    scores: bool = False  # True: a scalar reward model, judged by one score per response (engine.scalar)

    def read(self, reasoning: str, answer: str, think_closed: bool) -> Reading:
        """The official parser's reading, with ties (formats that can tie override this)."""
        p = self.parse(reasoning, answer, think_closed)
        choice = None if p.verdict is None else Choice(p.verdict.value)
        return Reading(choice, p.status, p.boxed)

    def raw_prompt(self, query: str, first: str, second: str) -> str | None:
        """The whole prompt string, where the official code builds one itself (no chat template)."""
        return None

    @abstractmethod
    def messages(self, query: str, first: str, second: str) -> list[dict[str, str]]:
        """Chat messages showing ``first`` as the first response and ``second`` as the second."""

    @abstractmethod
    def parse(self, reasoning: str, answer: str, think_closed: bool) -> ParsedVerdict:
        """Read the verdict from a finished output split at ``</think>``."""


def split_think(generated: str) -> tuple[str, str, bool]:
    """Split generated text (which starts inside the thinking block) at the first ``</think>``.

    Returns ``(reasoning, answer, think_closed)``. A leading ``<think>`` that a model
    repeats is dropped from the reasoning.
    """
    head, sep, tail = generated.partition(THINK_CLOSE)
    reasoning = head[len(THINK_OPEN) :] if head.startswith(THINK_OPEN) else head
    if not sep:
        return reasoning, "", False
    return reasoning, tail, True


def answer_segment(answer: str) -> str:
    """The part of the text after the first ``</think>`` that the official rule reads.

    ``run_generative.py`` takes ``("<think>" + generated).split("</think>")[1]``: the text
    between the first ``</think>`` and a second one if the model writes it; text after a
    second ``</think>`` is never read.
    """
    return answer.partition(THINK_CLOSE)[0]


def official_boxed(text: str) -> str | None:
    r"""The box content as the official rule reads it, else None.

    The LAST occurrence of the literal ``\boxed`` decides, whether a brace follows it or not.
    It must be ``\boxed{`` with its braces matched (``last_boxed_only_string`` and
    ``remove_boxed`` in the reference code); a trailing bare ``\boxed``, ``\boxed {...}`` with a
    space, or an unclosed last box gives None even when an earlier box was complete.
    """
    start = text.rfind("\\boxed")
    if start < 0 or not text.startswith("\\boxed{", start):
        return None
    return _matched(text, start + len("\\boxed{"))


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (or ``\boxed {...}``) in ``text``, else None.

    The tolerant reading: the last box that opens with a brace (whitespace allowed before it)
    and closes, skipping a trailing bare or unclosed ``\boxed``. Never decisive (see
    :func:`official_boxed` for the rule that decides). One pass over the text.
    """
    closes = _brace_matches(text)
    end = len(text)
    while (start := text.rfind("\\boxed", 0, end)) >= 0:
        i = start + len("\\boxed")
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{" and i in closes:
            return text[i + 1 : closes[i]]
        end = start
    return None


def _brace_matches(text: str) -> dict[int, int]:
    """For every ``{`` that is closed, the index of its ``}`` (one pass with a stack)."""
    stack: list[int] = []
    closes: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closes[stack.pop()] = i
    return closes


def _matched(text: str, i: int) -> str | None:
    """``text[i:j]`` where ``text[j]`` closes the brace opened just before ``i``, else None."""
    start, depth = i, 1
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None
