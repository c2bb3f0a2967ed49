"""Judge prompt formats: how a pair is rendered for a judge model and how its output is parsed.

``get_format(name)`` returns a :class:`~rrm_ui.protocol.base.JudgeFormat`; ``FORMATS`` maps every
registered name to its format and ``describe()`` lists them with their one-line descriptions (for
``--help`` and the menus). RRM is the format that must match the paper byte for byte; the others
reproduce each judge's official prompt and parser (docs/judges.md).
"""

from rrm_ui.protocol.autoj import AUTOJ_FORMATS
from rrm_ui.protocol.base import JudgeFormat, Reading, split_think
from rrm_ui.protocol.baselines import BASELINE_FORMATS
from rrm_ui.protocol.fastchat import FASTCHAT_FORMATS
from rrm_ui.protocol.pandalm import PANDALM_FORMATS
from rrm_ui.protocol.rm_r1 import RM_R1_FORMATS
from rrm_ui.protocol.rrm import RRM_FORMAT
from rrm_ui.protocol.scalar_rm import SCALAR_FORMATS

_ALL: tuple[JudgeFormat, ...] = (
    RRM_FORMAT,
    *BASELINE_FORMATS,
    *RM_R1_FORMATS,
    *FASTCHAT_FORMATS,
    *AUTOJ_FORMATS,
    *PANDALM_FORMATS,
    *SCALAR_FORMATS,
)

FORMATS: dict[str, JudgeFormat] = {fmt.name: fmt for fmt in _ALL}
if len(FORMATS) != len(_ALL):  # pragma: no cover - a programming error, caught by the tests
    raise RuntimeError("two judge formats share a name")


def get_format(name: str) -> JudgeFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown judge format {name!r}; known: {', '.join(sorted(FORMATS))}") from None


def describe() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered format, in registry order."""
    return [(fmt.name, fmt.description) for fmt in FORMATS.values()]


__all__ = ["FORMATS", "JudgeFormat", "Reading", "describe", "get_format", "split_think", "RRM_FORMAT"]
