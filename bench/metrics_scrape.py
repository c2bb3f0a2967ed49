"""How long one scrape of GET /metrics takes on a large database (rrm_ui/services/metrics.py).

    .venv/bin/python bench/metrics_scrape.py [--url URL] [--judgments 1000000] [--labels 100000] [--repeat 5]

Builds the synthetic database of bench/synth_db.py (fresh; a new SQLite file unless --url names
another empty database), then times ``metrics.exposition`` (every figure of a scrape: the
aggregate SQL and the text): ``--repeat`` times summing every judgment, then as the app scrapes
(with the judgments' totals kept between scrapes: the first sums everything, the later ones only
the rows after the kept ones), and prints the times, the page's size and the process's peak
memory growth during the scrapes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.synth_db import populate  # noqa: E402
from rrm_ui.services import metrics  # noqa: E402
from rrm_ui.storage import Repository, make_engine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="an empty database (default: a new SQLite file in a temporary folder)")
    p.add_argument("--reuse", help="a database bench/synth_db.py filled already (skips building one)")
    p.add_argument("--judgments", type=int, default=1_000_000)
    p.add_argument("--labels", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    if args.reuse:
        url = args.reuse
    else:
        url = args.url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='rrm-metrics-')) / 'bench.db'}"
        started = time.perf_counter()
        counts = populate(url, judgments=args.judgments, labels=args.labels)
        print(f"database {url}: {counts} in {time.perf_counter() - started:.1f} s")
    repo = Repository(make_engine(url))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def timed(totals: metrics.JudgmentTotals | None) -> tuple[float, int]:
        t = time.perf_counter()
        size = len(metrics.exposition(repo, overlap=2, totals=totals))
        return time.perf_counter() - t, size

    full = [timed(None) for _ in range(args.repeat)]
    totals = metrics.JudgmentTotals()  # as the app keeps it: synth_db's judgments are old, so settled
    first = timed(totals)
    later = [timed(totals) for _ in range(args.repeat)]
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    median = lambda runs: statistics.median(t for t, _ in runs)  # noqa: E731
    print(
        f"scrape summing every judgment: median {median(full):.3f} s, worst {max(t for t, _ in full):.3f} s "
        f"over {args.repeat}; {full[0][1]} bytes"
    )
    print(f"scrape with kept totals (the app's): first {first[0]:.3f} s, then median {median(later):.3f} s")
    print(f"peak memory during the scrapes: +{grown:.1f} MiB")


if __name__ == "__main__":
    main()
