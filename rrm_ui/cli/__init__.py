"""The ``rrm-ui`` command.

rrm-ui serve [options]                      the web app (python app.py does the same)
rrm-ui judge FILE --out OUT [options]       judge a JSONL file, one result line per item
rrm-ui judge [FILE] --dataset NAME [--db]   judge a stored data set; rerunning continues it
rrm-ui sweep --dataset NAME --budgets 512,1k,2k --votes 1,2,4,8
                                            a compute sweep: agreement against tokens over budgets x votes
rrm-ui offline prepare --dataset NAME --run RUN --model M --out requests.jsonl
rrm-ui offline import outputs.jsonl --run RUN
                                            a run judged by vllm run-batch instead of the live engine
rrm-ui import FILE [--name] [--map ...]     import a data set (JSONL, JSON, CSV, Parquet, .gz)
rrm-ui labels import FILE --dataset NAME    attach human labels to a stored data set
rrm-ui verdicts import FILE --dataset NAME --run NAME
                                            attach another judge's verdicts as an external run
rrm-ui export --dataset NAME --format F     human-corrected training data, or a full dump
rrm-ui report --dataset NAME [--run R] [--reference humans|majority|gold|NAME] [--format json|markdown]
                                            the dashboards' figures for scripts
rrm-ui db upgrade                           apply database migrations
rrm-ui users add NAME [--admin] | list      annotator accounts (the app asks for a login once one exists)
rrm-ui dev tiny-model DIR                   build an offline random-weight model (wiring checks)
rrm-ui dev tiny-rm DIR                      build an offline random-weight reward model (--judge scalar-rm)
rrm-ui dev demo-judge DIR                   train the demo judge on CPU (decides; not about quality)
"""

from __future__ import annotations

import argparse
import sys

from rrm_ui.cli import data, dev, judge, offline, report, serve, sweep, users


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rrm-ui",
        description="Judge responses with Reward Reasoning Models.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(sub)
    judge.add_parser(sub)
    sweep.add_parser(sub)
    offline.add_parser(sub)
    data.add_parsers(sub)
    users.add_parser(sub)
    report.add_parser(sub)
    dev.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
