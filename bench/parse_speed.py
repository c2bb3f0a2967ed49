"""Parse speed on hostile outputs: the verdict rule and the lenient reading over long whitespace runs.

    .venv/bin/python bench/parse_speed.py [--sizes 1000,4000,16000,64000]

For each size n, times ``RRM_FORMAT.parse`` on answers that put n spaces inside the box (the case
issue 13 measured: 16k spaces took over a second on the model's loop with the old lenient pattern),
n unclosed ``\\boxed{`` and n bare ``\\boxed``. A linear rule shows times growing with n, not n².
Timings on a shared machine are noisy; the growth between sizes is the point.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine  # noqa: E402


def cases(n: int) -> dict[str, str]:
    pad = " " * n
    return {
        "spaces in the box": "\\boxed{" + pad + "Assistant 1" + pad + "x}",
        "\\text{ + spaces": "\\boxed{\\text{" + pad + "x}",
        "unclosed boxes": "\\boxed{" * n,
        "bare boxes": "\\boxed " * n + "\\boxed{Assistant 2}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,4000,16000,64000")
    args = p.parse_args()
    from rrm_ui.protocol.rrm import RRM_FORMAT

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}")
    print("case".ljust(22) + "".join(f"n={n:,}".rjust(14) for n in sizes))
    for name in cases(1):
        row = name.ljust(22)
        for n in sizes:
            answer = cases(n)[name]
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                RRM_FORMAT.parse("", answer, True)
                best = min(best, time.perf_counter() - t0)
            row += f"{best * 1000:11.2f} ms"
        print(row)


if __name__ == "__main__":
    main()
