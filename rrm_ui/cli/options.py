"""Options shared by the commands that load a model (``judge`` and ``serve``), built from the fields.

Each setting is declared once, in :class:`~rrm_ui.config.Settings` (backend, judge format, retries,
decoding) or :class:`~rrm_ui.domain.Compute` (votes, swap, adaptive): its type, default and one-line
doc become the flag (``--name-with-dashes``, or the field's ``flag``), as vLLM's
``FrontendArgs.add_cli_args`` builds its flags from its dataclass. Every flag defaults to ``None``, so
what the command line does not say keeps the environment's setting (``RRM_UI_*``) or the field's
default.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from rrm_ui.config import Settings
from rrm_ui.domain import Compute, Sampling, default_budget
from rrm_ui.protocol import describe


def _kind(hint: Any) -> type:
    """The flag's value type: the non-None member of ``X | None``, the element type of a tuple."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return args[0]
    if args:
        return _kind(args[0])
    return hint


def _add(group: argparse._ArgumentGroup, f: Field, hint: Any, help_default: str | None = None) -> None:
    meta = f.metadata
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    default = f.default if f.default is not MISSING else None
    shown = help_default if help_default is not None else ("" if default in (None, (), False) else f"{default}")
    text = meta["help"] + (f" (default {shown})" if shown else "")
    kw: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
    kind = _kind(hint)
    if kind is bool:
        group.add_argument(flag, action="store_true", **kw)
        return
    if typing.get_origin(hint) is tuple:
        kw["action"] = "append"
    if meta.get("metavar"):
        kw["metavar"] = meta["metavar"]
    if meta.get("choices"):
        kw["choices"] = list(meta["choices"])
    if f.name == "judge_format":  # the registry's names (config.py knows no formats)
        kw["choices"] = [name for name, _ in describe()]
    group.add_argument(flag, type=kind, **kw)


def _cli_fields(cls: type) -> list[tuple[Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in fields(cls) if f.metadata.get("cli", False) and "help" in f.metadata]


DECODING = {f.name for f in fields(Sampling)}


def judges_epilog() -> str:
    """The judge formats ``--judge`` takes, each with its one-line description (from the registry)."""
    lines = ["judge formats (--judge NAME):"]
    lines += [f"  {name:<24} {text}" for name, text in describe()]
    return "\n".join(lines)


def add_backend_options(j: argparse.ArgumentParser) -> None:
    """The settings' flags: backend and judge, then decoding (the fields of Sampling)."""
    g = j.add_argument_group("backend and judge")
    d = j.add_argument_group("decoding (paper defaults: temperature 0.6, top_p 1.0, 8192 tokens)")
    for f, hint in _cli_fields(Settings):
        _add(d if f.name in DECODING else g, f, hint)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """The environment's settings with the command line's flags on top."""
    values = {f.name: getattr(args, f.name, None) for f, _ in _cli_fields(Settings)}
    if values.get("endpoints") is not None:
        values["endpoints"] = tuple(values["endpoints"])
    return Settings.from_env().but(**values, **extra)


def add_compute_options(group: argparse._ArgumentGroup, skip: tuple[str, ...] = ()) -> None:
    """The flags of :class:`~rrm_ui.domain.Compute` (votes, swap, adaptive, budget, margin, budget forcing),
    but for the fields named in ``skip`` (``rrm-ui sweep`` takes its votes as a list)."""
    for f, hint in _cli_fields(Compute):
        if f.name in skip:
            continue
        shown = {"budget": "two samples per vote, at least 8", "close_text": "'\\n</think>'"}.get(f.name)
        _add(group, f, hint, shown)


def compute_from(args: argparse.Namespace) -> Compute:
    """The command line's compute (ValueError for an impossible one); unset flags keep Compute's defaults."""
    values = {f.name: getattr(args, f.name) for f, _ in _cli_fields(Compute) if getattr(args, f.name, None) is not None}
    if "close_text" in values:  # a newline cannot be typed into a flag: "\\n" stands for one
        values["close_text"] = values["close_text"].replace("\\n", "\n")
    return Compute(**values)


__all__ = ["add_backend_options", "add_compute_options", "compute_from", "default_budget", "judges_epilog",
           "settings_from"]  # fmt: skip


def add_strategy_options(c: argparse._ArgumentGroup) -> None:
    """``--strategy`` and ``--bracket-seed``, as ``rrm-ui judge`` and ``rrm-ui sweep`` take them; a negative
    bracket seed means the input order (:func:`bracket_seed_from`)."""
    from rrm_ui.engine.runner import STRATEGIES

    c.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto: pair for two responses, knockout for more")  # fmt: skip
    c.add_argument(
        "--bracket-seed", type=int, default=0, help="knockout: shuffle seed for the bracket (-1: input order)"
    )


def bracket_seed_from(args: argparse.Namespace) -> None:
    """``--bracket-seed -1`` (any negative) as None: the knockout keeps the input order."""
    if args.bracket_seed is not None and args.bracket_seed < 0:
        args.bracket_seed = None
