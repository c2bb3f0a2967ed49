"""Auto-J's pairwise protocol with ties (``pairwise_tie``).

Source: ``GAIR-NLP/auto-j``: ``codes/usage/constants_prompt.py`` (commit ``5e280beeedf6``:
``pairwise_tie``, ``llama2_wrapper``, ``build_autoj_input``), ``codes/usage/example.py`` (commit
``7b7ddd7a8373``: ``extract_pariwise_result`` and the decoding: temperature 0.0, top_p 1.0,
``max_tokens=1024``), ``codes/leaderboard/pairwise_eval.py`` (commit ``5e280beeedf6``: pairwise
agreement is judged on both orders, ``exchange``).

The official code builds the whole prompt string, ``[INST] {input} [/INST]`` without a system
message, and hands it to vLLM as text (``raw_prompt``). ``messages()`` gives the user message
alone, which a Llama-2 chat template renders the same way. The verdict is read after the LAST
``final decision is ``: ``response 1`` / ``response 2`` / ``tie`` (case-insensitive).
``pairwise_eval.py`` asserts that every label is 0, 1 or 2, so the official evaluation has no rule
for an unreadable output (``-1``).
"""

from __future__ import annotations

from rrm_ui.domain import Choice, Status
from rrm_ui.protocol.base import ERROR_UNDEFINED, Decoding, Reading, Source
from rrm_ui.protocol.text_format import TextFormat

AUTOJ_REPO = "GAIR-NLP/auto-j"
AUTOJ_COMMIT = "5e280beeedf64d631d0d6acf1808bf00ad86c69b"
AUTOJ_EXAMPLE_COMMIT = "7b7ddd7a8373d3da3c8fab11fcd1486587a85770"

PROMPT_INPUT_WO_SYSTEM = "[INST] {input} [/INST]"

PAIRWISE_TIE = """You are assessing two submitted responses on a given user's query and judging which response is better or they are tied. Here is the data:

[BEGIN DATA]
***
[Query]: {prompt}
***
[Response 1]: {response}
***
[Response 2]: {response_another}
***
[END DATA]

Here are the instructions to assess and compare the two responses:

1. Pinpoint the key factors to distinguish these two responses.
2. Conclude your comparison by providing a final decision on which response is better, or they are tied. Begin your final decision statement with "So, the final decision is Response 1 / Response 2 / Tie". Ensure that your decision aligns coherently with the comprehensive evaluation and comparison you've provided."""  # noqa: E501

_MARK = "final decision is "


class AutoJPairwiseTie(TextFormat):
    name = "autoj-pairwise-tie"
    version = "1"
    description = "Auto-J pairwise_tie: after the last 'final decision is ': Response 1 / Response 2 / Tie"
    system_prompt = None
    can_tie = True
    games = 2
    error_score = ERROR_UNDEFINED
    uses_chat_template = False
    default_sampling = Decoding(temperature=0.0, top_p=1.0, max_tokens=1024)
    source = Source(
        AUTOJ_REPO,
        "codes/usage/constants_prompt.py; codes/usage/example.py; codes/leaderboard/pairwise_eval.py",
        AUTOJ_COMMIT,
        f"example.py read at {AUTOJ_EXAMPLE_COMMIT[:12]}",
    )

    def user_prompt(self, query: str, first: str, second: str) -> str:
        return PAIRWISE_TIE.format(prompt=query, response=first, response_another=second)

    def raw_prompt(self, query: str, first: str, second: str) -> str:
        # build_autoj_input(prompt, resp1, resp2, "pairwise_tie") -> llama2_wrapper(user_msg) (no system)
        return PROMPT_INPUT_WO_SYSTEM.format(input=self.user_prompt(query, first, second))

    def read_text(self, text: str) -> Reading:
        raw = text.strip()
        pos = raw.rfind(_MARK)
        if pos == -1:
            return Reading(None, Status.NO_VERDICT, None)
        rest = raw[pos + len(_MARK) :].strip().lower()
        if rest.startswith("response 1"):
            return Reading(Choice.A, Status.OK, "response 1")
        if rest.startswith("response 2"):
            return Reading(Choice.B, Status.OK, "response 2")
        if rest.startswith("tie"):
            return Reading(Choice.TIE, Status.OK, "tie")
        return Reading(None, Status.INVALID, rest[:40])


AUTOJ_FORMATS = (AutoJPairwiseTie(),)
