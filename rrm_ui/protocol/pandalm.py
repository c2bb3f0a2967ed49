"""PandaLM's pairwise judge.

Source: ``WeOpenML/PandaLM``, ``pandalm/utils/pandalm_inference.py`` (commit ``68238877d371``):
``build_pandalm_prompt`` (the task without an Input field), ``parse_pandalm_response``,
``postprocess_output`` / ``filter_special_token``, and ``inference``'s decoding (greedy beam search:
``num_beams=4``, ``early_stopping=True``, ``repetition_penalty=1.2``, ``max_new_tokens=512``,
temperature 0, top_p 1, top_k 1).

The official code builds the whole prompt string and tokenizes it directly (no chat template):
send ``raw_prompt``. Both responses are stripped and cleared of special-token strings (``<s>``,
``</s>``, ``[PAD]``, ...) before they are inserted; the instruction is inserted as given. The
verdict is the first line of the generated evaluation: ``1``, ``2`` or ``tie`` (any case); the
official parser returns a tie (0) for anything else, so unreadable outputs count as ties there.
"""

from __future__ import annotations

import re

from rrm_ui.domain import Choice, Status
from rrm_ui.protocol.base import ERROR_TIE, Decoding, Reading, Source
from rrm_ui.protocol.text_format import TextFormat

PANDALM_REPO = "WeOpenML/PandaLM"
PANDALM_COMMIT = "68238877d37171ffc5f8f55fbbbb711c058e6456"

SPECIAL_TOKENS = re.compile(
    r"<unk>|<pad>|<s>|</s>|\[PAD\]|<\|endoftext\|>|\[UNK\]|\[CLS\]|\[MASK\]|<\|startofpiece\|>|<\|endofpiece\|>|\[gMASK\]|\[sMASK\]"
)
_EVALUATION = "### Evaluation:"


def _clean(text: str) -> str:
    return SPECIAL_TOKENS.sub("", text.strip()).strip()


class PandaLM(TextFormat):
    name = "pandalm"
    version = "1"
    description = "PandaLM: the first line of the evaluation is 1, 2 or Tie (anything else counts as a tie there)"
    system_prompt = None
    can_tie = True
    error_score = ERROR_TIE
    uses_chat_template = False
    default_sampling = Decoding(
        temperature=0.0,
        top_p=1.0,
        max_tokens=512,
        extra={"top_k": 1, "num_beams": 4, "early_stopping": True, "repetition_penalty": 1.2},
    )
    source = Source(
        PANDALM_REPO,
        "pandalm/utils/pandalm_inference.py",
        PANDALM_COMMIT,
        "the official code decodes prompt and output together and reads between the first and the next "
        "'### Evaluation:'; rrm-ui reads the output up to its first '### Evaluation:' (the same unless "
        "the instruction or a response contains that line)",
    )

    def user_prompt(self, query: str, first: str, second: str) -> str:
        resp1, resp2 = _clean(first), _clean(second)
        rsp = f"### Response 1:\n{resp1}\n\n### Response 2:\n{resp2}"
        return (
            "Below are two responses for a given task. The task is defined by the Instruction. Evaluate the "
            f"responses and generate a reference answer for the task.\n\n### Instruction:\n{query}\n\n{rsp}\n\n"
            "### Evaluation:\n"
        )

    def raw_prompt(self, query: str, first: str, second: str) -> str:
        return self.user_prompt(query, first, second)

    def read_text(self, text: str) -> Reading:
        # postprocess_output's split("### Evaluation:")[1] on prompt + output: the output up to its
        # own first "### Evaluation:"; then filter_special_token; then parse_pandalm_response.
        evaluation = _clean(text.split(_EVALUATION)[0])
        first_line = evaluation.strip().split("\n")[0]
        if first_line == "1":
            return Reading(Choice.A, Status.OK, "1")
        if first_line == "2":
            return Reading(Choice.B, Status.OK, "2")
        if first_line.lower() == "tie":
            return Reading(Choice.TIE, Status.OK, first_line)
        return Reading(None, Status.INVALID if first_line else Status.NO_VERDICT, first_line[:40] or None)


PANDALM_FORMATS = (PandaLM(),)
