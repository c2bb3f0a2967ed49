"""Agreement statistics between raters (model verdicts, human annotators), each with a 95% interval.

Pure functions over plain sequences / pandas objects; nothing here knows about storage or the app.
Every result is an :class:`Estimate` (value, interval, sample size).  The formulas, so that each
number can be checked by hand:

* Missing labels (``None`` / ``NaN``) are never a category: :func:`agreement`, :func:`cohen_kappa`
  and :func:`confusion` drop every position where either rater's label is missing, and
  :func:`krippendorff_alpha_nominal` / :func:`pairwise` drop missing ratings.  Sequences are
  compared by position (a pandas index is ignored); values are compared with ``==`` semantics of
  :func:`pandas.factorize` (``"1"`` and ``1`` are different categories).
* :func:`wilson` -- the proportion ``p = k / n`` with the Wilson score interval
  ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``; nan when ``n == 0``.
* :func:`agreement` -- ``k`` = number of positions where the two labels are equal, ``n`` = number of
  positions, reported as :func:`wilson` ``(k, n)``.
* :func:`cohen_kappa` -- over the union of the categories either rater used: observed agreement
  ``p_o = k / n``, chance agreement ``p_e = Σ_c p_x(c)·p_y(c)`` with ``p_x(c)`` the share of x's labels
  equal to ``c`` (a category only one rater uses adds 0 to ``p_e`` but can still cost agreement);
  ``kappa = (p_o - p_e) / (1 - p_e)``; standard error ``SE = sqrt(p_o(1-p_o) / (n(1-p_e)²))`` (Cohen
  1960's large-sample approximation), interval ``kappa ± z·SE`` clipped to [-1, 1].  When
  ``p_e == 1`` (both raters used one and the same category throughout) kappa is 0/0: value and
  interval are nan.  The approximation gives a zero-width interval when ``p_o`` is 0 or 1.
* :func:`confusion` -- counts of (x, y) label pairs; rows are x's categories, columns y's, in the
  order given, zeros kept, pairs with a value not listed dropped.
* :func:`krippendorff_alpha_nominal` -- long format, one rating per entry.  ``m_u`` = ratings of
  unit ``u``; units with ``m_u < 2`` are not pairable and dropped.  With ``n_uc`` = ratings of ``u``
  in category ``c``, unit ``u`` adds ``n_uc(n_uk - [c == k]) / (m_u - 1)`` to coincidence ``o_ck``
  (its ordered pairs of distinct ratings, each weighted ``1/(m_u - 1)``), so its off-diagonal share
  is ``d_u = (m_u² - Σ_c n_uc²) / (m_u - 1)``.  ``n_c = Σ_k o_ck = Σ_u n_uc``, ``n = Σ_c n_c`` (pairable
  values) and ``alpha = 1 - (n - 1)·Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k`` where
  ``Σ_{c≠k} n_c·n_k = n² - Σ_c n_c²``.  nan when no unit is pairable or when that expected-
  disagreement sum is 0 (every pairable value in one category).  ``Estimate.n`` is the number of
  pairable units.  The interval is the 2.5/97.5 percentile of alpha over 1000 bootstrap resamples
  of the pairable units (``np.random.default_rng(0)``); resamples where alpha is undefined are left
  out.  Units with equal count vectors ``n_u·`` contribute identically, so a resample is the number of
  times each distinct vector is drawn: multinomial counts when the distinct vectors are few (exactly
  the distribution of drawing units with replacement; 10,000 units in a few milliseconds), drawn unit
  indices counted per vector when they are many.
* :func:`pairwise` -- per pair of raters, the units both rated (a self-merge on the unit column),
  :func:`agreement` and :func:`cohen_kappa` over those units.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "Estimate",
    "agreement",
    "cohen_kappa",
    "confusion",
    "grouped",
    "krippendorff_alpha_nominal",
    "pairwise",
    "wilson",
]

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
PAIRWISE_COLUMNS = [
    "rater_1",
    "rater_2",
    "n",
    "agreement",
    "agreement_low",
    "agreement_high",
    "kappa",
    "kappa_low",
    "kappa_high",
]

Labels = Sequence[Any] | pd.Series


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% interval and the sample size behind it (nan when undefined)."""

    value: float
    low: float
    high: float
    n: int

    def fmt(self, pct: bool = False) -> str:
        """``0.62 [0.55, 0.69] (n=120)``, with ``pct`` ``62.0% [55.1, 68.5] (n=120)``; ``n/a (n=0)`` when nan.

        An interval that is nan (e.g. every bootstrap resample undefined) is left out.
        """
        if math.isnan(self.value):
            return f"n/a (n={self.n})"
        if pct:
            value, low, high = 100 * self.value, 100 * self.low, 100 * self.high
            head, bounds = f"{value:.1f}%", f"{low:.1f}, {high:.1f}"
        else:
            head, bounds = f"{self.value:.2f}", f"{self.low:.2f}, {self.high:.2f}"
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{head} (n={self.n})"
        return f"{head} [{bounds}] (n={self.n})"


NAN_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


# ---------------------------------------------------------------------------- vectorised kernels


def _wilson_arrays(k: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise Wilson score: (p, low, high), nan where n == 0."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2n = z * z / n
        denom = 1 + z2n
        center = (p + z2n / 2) / denom
        half = z * np.sqrt(p * (1 - p) / n + z2n / (4 * n)) / denom
    return p, np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def _kappa_arrays(
    p_o: np.ndarray, p_e: np.ndarray, n: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise Cohen's kappa and its clipped interval; nan where n == 0 or p_e == 1."""
    p_o = np.asarray(p_o, dtype=float)
    p_e = np.asarray(p_e, dtype=float)
    n = np.asarray(n, dtype=float)
    undefined = (n == 0) | (1 - p_e <= 1e-12)
    q = np.where(undefined, np.nan, 1 - p_e)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (p_o - p_e) / q
        se = np.sqrt(p_o * (1 - p_o) / (n * q * q))
    return kappa, np.clip(kappa - z * se, -1.0, 1.0), np.clip(kappa + z * se, -1.0, 1.0)


def _series(x: Labels) -> pd.Series:
    return x.reset_index(drop=True) if isinstance(x, pd.Series) else pd.Series(list(x), dtype=object)


def _paired_codes(x: Labels, y: Labels) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of x and y over their union of categories, positions with a missing label dropped."""
    xs, ys = _series(x), _series(y)
    if len(xs) != len(ys):
        raise ValueError(f"x and y differ in length: {len(xs)} != {len(ys)}")
    codes, uniques = pd.factorize(pd.concat([xs, ys], ignore_index=True))
    cx, cy = codes[: len(xs)], codes[len(xs) :]
    keep = (cx >= 0) & (cy >= 0)
    return cx[keep], cy[keep], len(uniques)


def _estimate(value: Any, low: Any, high: Any, n: Any) -> Estimate:
    return Estimate(float(value), float(low), float(high), int(n))


# ---------------------------------------------------------------------------- public functions


def wilson(k: int, n: int, z: float = 1.96) -> Estimate:
    """The proportion ``k / n`` with its Wilson score interval; nan when ``n == 0``."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return NAN_ESTIMATE
    p, low, high = _wilson_arrays(np.array([k]), np.array([n]), z)
    return _estimate(p[0], low[0], high[0], n)


def agreement(x: Labels, y: Labels) -> Estimate:
    """Share of positions where ``x == y`` (Wilson interval); positions with a missing label are dropped."""
    cx, cy, _ = _paired_codes(x, y)
    return wilson(int(np.count_nonzero(cx == cy)), len(cx))


def cohen_kappa(x: Labels, y: Labels, z: float = 1.96) -> Estimate:
    """Cohen's kappa over the union of both raters' categories, with Cohen's (1960) large-sample interval."""
    cx, cy, n_cat = _paired_codes(x, y)
    n = len(cx)
    if n == 0:
        return NAN_ESTIMATE
    p_o = np.count_nonzero(cx == cy) / n
    p_e = np.dot(np.bincount(cx, minlength=n_cat), np.bincount(cy, minlength=n_cat)) / (n * n)
    kappa, low, high = _kappa_arrays(np.array([p_o]), np.array([p_e]), np.array([n]), z)
    return _estimate(kappa[0], low[0], high[0], n)


def confusion(x: Labels, y: Labels, rows: Sequence[str], cols: Sequence[str]) -> pd.DataFrame:
    """Counts of label pairs: index ``rows`` (values of x), columns ``cols`` (values of y), zeros kept.

    Pairs where either value is not listed (missing values included) are dropped.
    """
    xs, ys = _series(x), _series(y)
    if len(xs) != len(ys):
        raise ValueError(f"x and y differ in length: {len(xs)} != {len(ys)}")
    row_index, col_index = pd.Index(list(rows), dtype=object), pd.Index(list(cols), dtype=object)
    if not row_index.is_unique or not col_index.is_unique:
        raise ValueError("rows and cols must not repeat a category")
    r = row_index.get_indexer(xs.astype(object))
    c = col_index.get_indexer(ys.astype(object))
    keep = (r >= 0) & (c >= 0)
    n_rows, n_cols = len(row_index), len(col_index)
    counts = np.bincount(r[keep] * n_cols + c[keep], minlength=n_rows * n_cols).reshape(n_rows, n_cols)
    return pd.DataFrame(counts.astype(np.int64), index=row_index, columns=col_index)


def _alpha_from_sums(n: np.ndarray, disagreement: np.ndarray, sum_sq: np.ndarray) -> np.ndarray:
    """alpha = 1 - (n - 1)·D / (n² - Σ n_c²), nan where the expected-disagreement sum is 0."""
    expected = n * n - sum_sq
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * disagreement / np.where(expected > 0, expected, 1), np.nan)


def _bootstrap_weights(multiplicity: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of (resamples × types) counts: how often each unit type is drawn when the units are resampled.

    Drawing ``P`` units with replacement gives type counts ~ multinomial(P, multiplicity / P).  numpy
    draws a multinomial with one binomial per type, so when the types are many (nearly every unit its
    own type) drawing the unit indices and counting them is faster; both are exact.  Blocks of 100
    resamples bound the memory.
    """
    units, n_types = int(multiplicity.sum()), len(multiplicity)
    few_types = 12 * n_types <= units
    type_of_unit = None if few_types else np.repeat(np.arange(n_types), multiplicity)
    for start in range(0, BOOTSTRAP_RESAMPLES, 100):
        size = min(100, BOOTSTRAP_RESAMPLES - start)
        if type_of_unit is None:
            yield rng.multinomial(units, multiplicity / units, size=size).astype(float)
        else:
            drawn = type_of_unit[rng.integers(0, units, size=(size, units))]
            flat = (np.arange(size)[:, None] * n_types + drawn).ravel()
            yield np.bincount(flat, minlength=size * n_types).reshape(size, n_types).astype(float)


def krippendorff_alpha_nominal(units: Labels, values: Labels) -> Estimate:
    """Krippendorff's alpha for nominal data, one entry per (unit, value) rating; bootstrap interval over units.

    Any number of raters per unit; missing values are dropped, then units with fewer than two
    ratings (not pairable).  ``Estimate.n`` is the number of pairable units.
    """
    us, vs = _series(units), _series(values)
    if len(us) != len(vs):
        raise ValueError(f"units and values differ in length: {len(us)} != {len(vs)}")
    u_codes, u_uniques = pd.factorize(us)
    v_codes, v_uniques = pd.factorize(vs)
    keep = (u_codes >= 0) & (v_codes >= 0)
    u_codes, v_codes = u_codes[keep], v_codes[keep]
    n_units, n_cat = len(u_uniques), len(v_uniques)
    if n_units == 0 or n_cat == 0:
        return NAN_ESTIMATE
    # n_uc: ratings of unit u in category c; only pairable units (m_u >= 2) are kept
    counts = np.bincount(u_codes * n_cat + v_codes, minlength=n_units * n_cat).reshape(n_units, n_cat)
    m = counts.sum(axis=1)
    counts = counts[m >= 2]
    pairable = len(counts)
    if pairable == 0:
        return NAN_ESTIMATE
    # units with the same count vector contribute the same: work on the distinct vectors
    small = np.uint8 if counts.max() < 256 else np.int64  # narrow rows sort faster in np.unique
    types, multiplicity = np.unique(counts.astype(small), axis=0, return_counts=True)
    types = types.astype(float)
    m_t = types.sum(axis=1)
    d_t = (m_t * m_t - (types * types).sum(axis=1)) / (m_t - 1)  # Σ_{c≠k} o_ck of one unit

    def alpha(weights: np.ndarray) -> np.ndarray:
        n_c = weights @ types
        return _alpha_from_sums(weights @ m_t, weights @ d_t, (n_c * n_c).sum(axis=-1))

    value = float(alpha(multiplicity.astype(float)))
    if math.isnan(value):
        return Estimate(math.nan, math.nan, math.nan, pairable)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    boot = np.concatenate([alpha(block) for block in _bootstrap_weights(multiplicity, rng)])
    boot = boot[~np.isnan(boot)]
    if len(boot) == 0:
        return Estimate(value, math.nan, math.nan, pairable)
    low, high = np.quantile(boot, [0.025, 0.975])
    return _estimate(value, low, high, pairable)


def pairwise(labels: pd.DataFrame, unit: str, rater: str, value: str) -> pd.DataFrame:
    """Agreement and Cohen's kappa for every pair of raters over the units both rated.

    One row per pair ``rater_1 < rater_2`` with at least one shared unit, sorted by the pair.  A rater's
    last row for a unit is their label for it; rows whose unit, rater or (last) value is missing are
    dropped.  Columns: see ``PAIRWISE_COLUMNS``.
    """
    frame = labels[[unit, rater, value]].set_axis(["u", "r", "v"], axis=1)
    frame = frame.drop_duplicates(["u", "r"], keep="last").dropna()
    merged = frame.merge(frame, on="u", suffixes=("_1", "_2"))
    merged = merged[merged["r_1"] < merged["r_2"]]
    if merged.empty:
        return pd.DataFrame(
            {
                "rater_1": pd.Series([], dtype=frame["r"].dtype),
                "rater_2": pd.Series([], dtype=frame["r"].dtype),
                "n": pd.Series([], dtype=np.int64),
                **{name: pd.Series([], dtype=float) for name in PAIRWISE_COLUMNS[3:]},
            }
        )
    by_pair = grouped(merged["r_1"].astype(str) + "\x00" + merged["r_2"].astype(str), merged["v_1"], merged["v_2"])
    names = by_pair["group"].str.split("\x00", n=1, expand=True)
    return pd.DataFrame(
        {
            "rater_1": names[0].to_numpy(),
            "rater_2": names[1].to_numpy(),
            **{c: by_pair[c].to_numpy() for c in PAIRWISE_COLUMNS[2:]},
        }
    )


GROUPED_COLUMNS = ("group", "n", "agree", "agreement", "agreement_low", "agreement_high", "kappa", "kappa_low",
                   "kappa_high")  # fmt: skip


def grouped_codes(group: np.ndarray, cx: np.ndarray, cy: np.ndarray, n_groups: int, n_cat: int,
                  z: float = 1.96) -> dict[str, np.ndarray]:  # fmt: skip
    """The kernel of :func:`grouped` on integer codes: ``group`` in ``[0, n_groups)``, ``cx`` and ``cy`` in
    ``[0, n_cat)``, no missing values. Arrays of length ``n_groups`` (a group without rows: n = 0, nan)."""
    group = np.asarray(group, dtype=np.int64)
    cx, cy = np.asarray(cx, dtype=np.int64), np.asarray(cy, dtype=np.int64)
    n = np.bincount(group, minlength=n_groups)
    k = np.bincount(group, weights=(cx == cy).astype(float), minlength=n_groups)
    tx = np.bincount(group * n_cat + cx, minlength=n_groups * n_cat).reshape(n_groups, n_cat)
    ty = np.bincount(group * n_cat + cy, minlength=n_groups * n_cat).reshape(n_groups, n_cat)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_e = (tx * ty).sum(axis=1) / (n.astype(float) ** 2)
        agree, agree_low, agree_high = _wilson_arrays(k, n, z)
        kappa, kappa_low, kappa_high = _kappa_arrays(k / n, p_e, n, z)
    return {"n": n.astype(np.int64), "agree": k.astype(np.int64), "agreement": agree, "agreement_low": agree_low,
            "agreement_high": agree_high, "kappa": kappa, "kappa_low": kappa_low, "kappa_high": kappa_high}  # fmt: skip


def grouped(groups: Labels, x: Labels, y: Labels, z: float = 1.96) -> pd.DataFrame:
    """:func:`agreement` and :func:`cohen_kappa` of x and y within each group, in one vectorised pass.

    Columns: group, n, agree, agreement, agreement_low, agreement_high, kappa, kappa_low, kappa_high;
    one row per group that has at least one complete (x, y) position, sorted by group.
    """
    g, xs, ys = _series(groups), _series(x), _series(y)
    if not len(g) == len(xs) == len(ys):
        raise ValueError(f"groups, x and y differ in length: {len(g)}, {len(xs)}, {len(ys)}")
    codes, uniques = pd.factorize(pd.concat([xs, ys], ignore_index=True))
    cx, cy = codes[: len(xs)], codes[len(xs) :]
    keep = (cx >= 0) & (cy >= 0) & g.notna().to_numpy()
    group_codes, keys = pd.factorize(g[keep], sort=True)
    arrays = grouped_codes(group_codes, cx[keep], cy[keep], len(keys), max(len(uniques), 1), z)
    return pd.DataFrame({"group": np.asarray(keys, dtype=object), **arrays})
