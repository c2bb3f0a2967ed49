"""``rrm-ui dev``: developer tools."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from rrm_ui.dev.demo_judge import STEPS, DemoSpec  # no torch import: that waits for the build

    spec = DemoSpec()
    dev = sub.add_parser("dev", help="developer tools")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    t = dev_sub.add_parser("tiny-model", help="build a tiny random-weight model offline (its verdicts are noise)")
    t.add_argument("out_dir")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(handler=tiny_model)
    r = dev_sub.add_parser(
        "tiny-rm",
        help="build a tiny random-weight scalar reward model (sequence classification) offline, for "
        "--judge scalar-rm wiring checks (its scores are noise)",
    )
    r.add_argument("out_dir")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(handler=tiny_rm)
    d = dev_sub.add_parser(
        "demo-judge",
        help="train the demo judge offline on CPU: it decides, with a known position bias; "
        "its verdicts are not about quality (docs/demo-judge.md)",
    )
    d.add_argument("out_dir")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--p-first", type=float, default=spec.p_first, help="P(Assistant 1) at temperature 1 (%(default)s)")
    d.add_argument("--long-share", type=float, default=spec.long_share, help="share of long reasoning (%(default)s)")
    d.add_argument("--short-tokens", type=int, default=spec.short_tokens, help="short reasoning tokens (%(default)s)")
    d.add_argument("--long-tokens", type=int, default=spec.long_tokens, help="long reasoning tokens (%(default)s)")
    d.add_argument("--steps", type=int, default=STEPS, help="training steps (%(default)s)")
    d.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    d.add_argument("-v", "--verbose", action="store_true", help="print every training step")
    d.set_defaults(handler=demo_judge)


def tiny_model(args: argparse.Namespace) -> int:
    from rrm_ui.dev.tiny_model import build_tiny_model

    path = build_tiny_model(args.out_dir, seed=args.seed)
    print(f"tiny model written to {path} (random weights: wiring checks only)")
    return 0


def tiny_rm(args: argparse.Namespace) -> int:
    from rrm_ui.dev.tiny_rm import build_tiny_rm

    path = build_tiny_rm(args.out_dir, seed=args.seed)
    print(f"tiny reward model written to {path} (random weights: wiring checks only; judge with --judge scalar-rm)")
    return 0


def demo_judge(args: argparse.Namespace) -> int:
    from rrm_ui.dev.demo_judge import NOTE, build_demo_judge, demo_judge_info

    def progress(fraction: float, message: str) -> None:
        if args.verbose or fraction >= 0.9:
            print(f"[{fraction:4.0%}] {message}", flush=True)

    path = build_demo_judge(
        args.out_dir,
        seed=args.seed,
        p_first=args.p_first,
        long_share=args.long_share,
        short_tokens=args.short_tokens,
        long_tokens=args.long_tokens,
        steps=args.steps,
        threads=args.threads,
        progress=progress,
    )
    info = demo_judge_info(path) or {}
    mean = info.get("measured", {}).get("mean", {})
    print(f"demo judge written to {path} ({NOTE})")
    print(
        f"learned: P(Assistant 1) {mean.get('first_short_T1')} at T=1, {mean.get('first_short_T0.6')} at T=0.6; "
        f"P(long reasoning) {mean.get('long_T1')} at T=1, {mean.get('long_T0.6')} at T=0.6; "
        f"completion tokens short {info['completion_tokens']['short']}, long {info['completion_tokens']['long']}"
    )
    return 0
