"""The shape shared by the judge formats whose official parser reads the whole output as text."""

from __future__ import annotations

from abc import abstractmethod

from rrm_ui.domain import ParsedVerdict
from rrm_ui.protocol.base import JudgeFormat, Reading, full_text


class TextFormat(JudgeFormat):
    """A system prompt (or none) and one user message; the official parser on the full output.

    ``system_prompt`` None sends the user message alone; ``""`` sends an empty system message,
    as the RewardBench-derived scripts do for every format without a system prompt of its own
    (``messages = [{"role": "system", "content": system_prompt}, {"role": "user", ...}]``).
    """

    thinks = False

    @abstractmethod
    def user_prompt(self, query: str, first: str, second: str) -> str:
        """The user message, exactly as the official code formats it."""

    @abstractmethod
    def read_text(self, text: str) -> Reading:
        """The official parser applied to the text it receives."""

    def messages(self, query: str, first: str, second: str) -> list[dict[str, str]]:
        user = {"role": "user", "content": self.user_prompt(query, first, second)}
        if self.system_prompt is None:
            return [user]
        return [{"role": "system", "content": self.system_prompt}, user]

    def read(self, reasoning: str, answer: str, think_closed: bool) -> Reading:
        return self.read_text(full_text(reasoning, answer, think_closed))

    def parse(self, reasoning: str, answer: str, think_closed: bool) -> ParsedVerdict:
        return self.read(reasoning, answer, think_closed).parsed()
