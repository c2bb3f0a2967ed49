"""The FastChat MT-Bench pairwise judge with ties (``pair-v2`` with ``[[C]]``), two games per pair.

Source: ``lm-sys/FastChat``: ``fastchat/llm_judge/data/judge_prompts.jsonl`` (commit
``0e6e7fdc78bf``, the ``pair-v2`` line: system prompt and template) and
``fastchat/llm_judge/common.py`` (commit ``007ecd07da27``: ``run_judge_pair`` renders and parses,
``play_a_match_pair`` plays game 1 with the responses in order and game 2 swapped,
``load_pairwise_model_judgments`` combines them). The GPT-4 judge path sends the system message and
the user message (``conv.set_system_message``; ``to_openai_api_messages``) at temperature 0 with
``max_tokens=2048``. FastChat's ``show_result`` leaves out every match with an ``error`` game.
"""

from __future__ import annotations

from rrm_ui.domain import Choice, Status
from rrm_ui.protocol.base import ERROR_DROPPED, Decoding, Reading, Source
from rrm_ui.protocol.text_format import TextFormat

FASTCHAT_REPO = "lm-sys/FastChat"
FASTCHAT_PROMPTS_COMMIT = "0e6e7fdc78bf64aceea1508694ce4e6472810b8b"
FASTCHAT_COMMON_COMMIT = "007ecd07da27132136c707eef92bf9841fd167f2"

PAIR_V2_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any positional biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly following this format: "
    '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
PAIR_V2_TEMPLATE = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]"
    "\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)


class FastChatPairV2(TextFormat):
    name = "fastchat-pair-v2"
    version = "1"
    description = "FastChat MT-Bench pair-v2 with [[C]] ties; always two games, the second in swapped order"
    system_prompt = PAIR_V2_SYSTEM_PROMPT
    can_tie = True
    games = 2
    error_score = ERROR_DROPPED
    default_sampling = Decoding(temperature=0.0, top_p=1.0, max_tokens=2048)
    source = Source(
        FASTCHAT_REPO,
        "fastchat/llm_judge/data/judge_prompts.jsonl; fastchat/llm_judge/common.py",
        FASTCHAT_PROMPTS_COMMIT,
        f"common.py read at {FASTCHAT_COMMON_COMMIT[:12]}; the system prompt says 'positional biases' "
        "(the RRM fork's copy says 'position biases' and drops the tie)",
    )

    def user_prompt(self, query: str, first: str, second: str) -> str:
        return PAIR_V2_TEMPLATE.format(question=query, answer_a=first, answer_b=second)

    def read_text(self, text: str) -> Reading:
        # run_judge_pair, output_format "[[A]]": A, then B, then C (tie), else "error".
        if "[[A]]" in text:
            return Reading(Choice.A, Status.OK, "[[A]]")
        if "[[B]]" in text:
            return Reading(Choice.B, Status.OK, "[[B]]")
        if "[[C]]" in text:
            return Reading(Choice.TIE, Status.OK, "[[C]]")
        return Reading(None, Status.NO_VERDICT, None)


def game_winner(reading: Reading, game: int) -> str:
    """A game's winner in FastChat's terms: ``model_1`` / ``model_2`` / ``tie`` / ``error``.

    Game 1 shows ``model_1`` as A; game 2 shows ``model_2`` as A (``g1_map`` / ``g2_map``).
    """
    if reading.choice is Choice.TIE:
        return "tie"
    if reading.choice not in (Choice.A, Choice.B):
        return "error"
    first_is_a = game == 1
    return "model_1" if (reading.choice is Choice.A) == first_is_a else "model_2"


def match_winner(game1: Reading, game2: Reading) -> str:
    """``load_pairwise_model_judgments``: the two games' winner when they agree, else ``inconsistent``."""
    g1, g2 = game_winner(game1, 1), game_winner(game2, 2)
    return g1 if g1 == g2 else "inconsistent"


FASTCHAT_FORMATS = (FastChatPairV2(),)
