"""Scalar reward models: a sequence-classification head gives every response one score.

Source: the RRM paper's evaluation fork, ``microsoft/LMOps`` ``RRM-evaluation/rewardbench/models/``
(``armorm.py`` at ``af6bc85e3e66``; ``pipeline.py``, ``utils.py`` ``prepare_dialogue_from_tokenizer``
at ``c81974c3a9f7``). Each response is rendered alone as the conversation ``[user: query, assistant:
response]`` with the reward model's own chat template (``apply_chat_template(messages, tokenize=False)``,
no generation prompt), tokenized with at most 2048 tokens (``max_length=2048``, truncated at the end),
and run through the model once; its score is the first logit (``logits[0][0]``; ArmoRM's custom head
returns its preference score there). The higher score wins the pair.

Equal scores: the fork's ``LegacyArmoRMPipeline`` breaks them with ``random.choice`` (seeded
``random.seed(0)``); rrm-ui records a tie instead (``Verdict.TIE``), which counts toward neither response.
There is no text to parse: the engine reads the two scores (:mod:`rrm_ui.engine.scalar`), so
:meth:`ScalarRM.parse` is never the rule, and a format with ``scores = True`` is judged with
``Backend.score`` rather than ``Backend.stream``.
"""

from __future__ import annotations

from rrm_ui.domain import Choice, ParsedVerdict, Status
from rrm_ui.protocol.base import ERROR_HALF, JudgeFormat, Reading, Source

LMOPS_REPO = "microsoft/LMOps"
ARMORM_COMMIT = "af6bc85e3e669ad5ec371d074c767905869c862e"
PIPELINE_COMMIT = "c81974c3a9f7cfb3be37b9a5168e781bda9f1f75"
MAX_LENGTH = 2048  # RewardBenchPipeline / ArmoRMPipeline: tokenizer(..., truncation=True, max_length=2048)


def verdict_from_scores(score_a: float, score_b: float) -> Choice:
    """The pair's verdict from the scores of the response shown first (``a``) and second (``b``):
    the higher wins, equal scores are a tie (the fork breaks a tie at random; rrm-ui records it)."""
    if score_a > score_b:
        return Choice.A
    if score_b > score_a:
        return Choice.B
    return Choice.TIE


class ScalarRM(JudgeFormat):
    name = "scalar-rm"
    version = "1"
    description = (
        "scalar reward model (sequence-classification head, Skywork-Reward / ArmoRM style): one score per "
        "response, the higher wins, equal scores a tie"
    )
    can_tie = True
    error_score = ERROR_HALF  # RewardBench's accuracy: a tie broken at random is half right on average
    default_sampling = None  # nothing is generated
    system_prompt = None  # the conversation is [user: query, assistant: response]
    thinks = False
    games = 1  # one score per response: the order of the pair changes nothing
    scores = True
    max_length = MAX_LENGTH
    source = Source(
        LMOPS_REPO,
        "RRM-evaluation/rewardbench/models/armorm.py, models/pipeline.py, utils.py (prepare_dialogue_from_tokenizer)",
        ARMORM_COMMIT,
        "equal scores: the fork's LegacyArmoRMPipeline picks a winner with random.choice (seeded 0); rrm-ui "
        "records a tie. The text is rendered with the chat template and tokenized without adding special tokens "
        "again (one BOS, as RewardBenchPipeline's double-BOS mask leaves it)",
    )

    def response_messages(self, query: str, response: str) -> list[dict[str, str]]:
        """The conversation one response is scored in (``prepare_dialogue_from_tokenizer``, single turn)."""
        return [{"role": "user", "content": query}, {"role": "assistant", "content": response}]

    def messages(self, query: str, first: str, second: str) -> list[dict[str, str]]:
        """The conversation of the first response (a reward model scores each response on its own)."""
        return self.response_messages(query, first)

    def parse(self, reasoning: str, answer: str, think_closed: bool) -> ParsedVerdict:
        """No text to parse: a scalar judge's verdict comes from its scores (engine.scalar)."""
        return ParsedVerdict(Status.NO_VERDICT, None, None, None)

    def read(self, reasoning: str, answer: str, think_closed: bool) -> Reading:
        return Reading(None, Status.NO_VERDICT, None)


SCALAR_FORMATS = (ScalarRM(),)
