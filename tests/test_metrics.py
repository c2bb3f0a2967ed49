"""Tests for rrm_ui.analysis.metrics against hand-worked examples, published values and loop-based references."""

from __future__ import annotations

import ast
import dataclasses
import math
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rrm_ui.analysis import metrics
from rrm_ui.analysis.metrics import (
    Estimate,
    agreement,
    cohen_kappa,
    confusion,
    krippendorff_alpha_nominal,
    pairwise,
    wilson,
)

# ---------------------------------------------------------------------------- loop-based references


def ref_wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """Wilson interval in its other textbook form: (2k + z² ± z·sqrt(z² + 4k(n-k)/n)) / (2(n + z²))."""
    root = z * math.sqrt(z * z + 4 * k * (n - k) / n)
    return k / n, (2 * k + z * z - root) / (2 * (n + z * z)), (2 * k + z * z + root) / (2 * (n + z * z))


def ref_kappa(x: Sequence[Hashable], y: Sequence[Hashable], z: float = 1.96) -> tuple[float, float, float]:
    n = len(x)
    p_o = sum(1 for a, b in zip(x, y, strict=True) if a == b) / n
    count_x, count_y = Counter(x), Counter(y)
    p_e = sum(count_x[c] * count_y[c] for c in set(x) | set(y)) / (n * n)
    if p_e == 1:
        return math.nan, math.nan, math.nan
    kappa = (p_o - p_e) / (1 - p_e)
    se = math.sqrt(p_o * (1 - p_o) / (n * (1 - p_e) ** 2))
    return kappa, max(-1.0, kappa - z * se), min(1.0, kappa + z * se)


def ref_alpha(ratings: dict[Hashable, list[Hashable]]) -> float:
    """Krippendorff's definition: every ordered pair of distinct ratings in a unit adds 1/(m_u - 1) to o_ck."""
    o: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in ratings.values():
        m = len(values)
        if m < 2:
            continue
        for i in range(m):
            for j in range(m):
                if i != j:
                    o[(values[i], values[j])] += 1 / (m - 1)
    n_c: dict[Hashable, float] = defaultdict(float)
    for (c, _k), w in o.items():
        n_c[c] += w
    n = sum(n_c.values())
    observed = sum(w for (c, k), w in o.items() if c != k)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n == 0 or expected == 0:
        return math.nan
    return 1 - (n - 1) * observed / expected


def krippendorff_2011() -> pd.DataFrame:
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units.

    Unit:   1  2  3  4  5  6  7  8  9  10 11 12
    A:      1  2  3  3  2  1  4  1  2  .  .  .
    B:      1  2  3  3  2  2  4  1  2  5  .  3
    C:      .  3  3  3  2  3  4  2  2  5  1  .
    D:      1  2  3  3  2  4  4  1  2  5  1  .
    Missing cells are returned as rows with value None.
    """
    table = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    rows = [(unit + 1, coder, v) for coder, values in table.items() for unit, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["unit", "coder", "value"])


# ---------------------------------------------------------------------------- Estimate


def test_estimate_fmt() -> None:
    assert Estimate(0.62, 0.55, 0.69, 120).fmt() == "0.62 [0.55, 0.69] (n=120)"
    assert Estimate(0.62, 0.551, 0.685, 120).fmt(pct=True) == "62.0% [55.1, 68.5] (n=120)"
    assert Estimate(-0.05, -0.2, 0.1, 7).fmt() == "-0.05 [-0.20, 0.10] (n=7)"
    assert Estimate(math.nan, math.nan, math.nan, 0).fmt() == "n/a (n=0)"
    assert Estimate(math.nan, math.nan, math.nan, 0).fmt(pct=True) == "n/a (n=0)"
    assert Estimate(math.nan, math.nan, math.nan, 4).fmt() == "n/a (n=4)"  # undefined although n > 0
    assert Estimate(0.5, math.nan, math.nan, 3).fmt() == "0.50 (n=3)"  # no interval to show


def test_estimate_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Estimate(0.5, 0.4, 0.6, 10).value = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------- wilson


def test_wilson_textbook_values() -> None:
    # k=0, n=10: the lower bound is exactly 0 and the upper z²/(n + z²) = 3.8416/13.8416 = 0.2775
    zero = wilson(0, 10)
    assert zero.value == 0
    assert zero.low == pytest.approx(0, abs=1e-12)
    assert zero.high == pytest.approx(0.2775, abs=1e-4)
    assert zero.n == 10
    # k=5, n=10: symmetric around 0.5
    half = wilson(5, 10)
    assert (half.value, half.low, half.high) == pytest.approx((0.5, 0.2366, 0.7634), abs=1e-4)
    # k=n=10 mirrors k=0
    full = wilson(10, 10)
    assert (full.low, full.high) == pytest.approx((1 - 0.2775, 1.0), abs=1e-4)
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score interval)
    assert (wilson(81, 263).low, wilson(81, 263).high) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert (wilson(15, 148).low, wilson(15, 148).high) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert (wilson(1, 29).low, wilson(1, 29).high) == pytest.approx((0.0061, 0.1718), abs=1e-4)


def test_wilson_matches_reference_form() -> None:
    for n in (1, 2, 7, 50, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for z in (1.0, 1.96, 2.576):
                got = wilson(k, n, z)
                assert (got.value, got.low, got.high) == pytest.approx(ref_wilson(k, n, z), abs=1e-12)
                assert got.n == n


def test_wilson_empty_and_invalid() -> None:
    empty = wilson(0, 0)
    assert math.isnan(empty.value) and math.isnan(empty.low) and math.isnan(empty.high)
    assert empty.n == 0
    for k, n in [(-1, 5), (6, 5), (0, -1)]:
        with pytest.raises(ValueError):
            wilson(k, n)


# ---------------------------------------------------------------------------- agreement


def test_agreement_counts_equal_positions() -> None:
    # positions 0, 1 and 3 agree: 3 of 5
    got = agreement(["A", "B", "A", "B", "none"], ["A", "B", "B", "B", "A"])
    want = wilson(3, 5)
    assert got == want
    assert got.value == pytest.approx(0.6)


def test_agreement_is_positional_and_drops_missing() -> None:
    x = pd.Series(["A", "B", "A", None, "B"], index=[10, 11, 12, 13, 14])
    y = pd.Series(["A", "A", "A", "A", np.nan], index=[4, 3, 2, 1, 0])  # index ignored
    # positions 3 and 4 have a missing label; of the other 3, positions 0 and 2 agree
    assert agreement(x, y) == wilson(2, 3)


def test_agreement_empty_and_length_mismatch() -> None:
    empty = agreement([], [])
    assert math.isnan(empty.value) and empty.n == 0
    assert empty.fmt() == "n/a (n=0)"
    with pytest.raises(ValueError):
        agreement(["A"], ["A", "B"])


# ---------------------------------------------------------------------------- cohen_kappa


def test_kappa_two_by_two_by_hand() -> None:
    #            y=yes  y=no
    #   x=yes      20      5     (x says yes 25 times)
    #   x=no       10     15     (y says yes 30 times), n = 50
    # p_o = (20 + 15) / 50 = 0.7
    # p_e = (25/50)(30/50) + (25/50)(20/50) = 0.30 + 0.20 = 0.5
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    # SE = sqrt(0.7 · 0.3 / (50 · 0.5²)) = sqrt(0.21 / 12.5) = sqrt(0.0168) = 0.1296148
    # interval = 0.4 ± 1.96 · 0.129615 = 0.4 ± 0.254045
    x = ["yes"] * 25 + ["no"] * 25
    y = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    got = cohen_kappa(x, y)
    assert got.value == pytest.approx(0.4)
    assert got.low == pytest.approx(0.4 - 0.254045, abs=1e-6)
    assert got.high == pytest.approx(0.4 + 0.254045, abs=1e-6)
    assert got.n == 50
    # z = 2.576 widens it to 0.4 ± 2.576 · 0.129615 = 0.4 ± 0.333888
    wide = cohen_kappa(x, y, z=2.576)
    assert (wide.low, wide.high) == pytest.approx((0.4 - 0.333888, 0.4 + 0.333888), abs=1e-6)


def test_kappa_category_only_one_rater_uses() -> None:
    # the model says "none", which the human never says
    x = ["A", "A", "B", "B", "A", "B"]  # human: A 3/6, B 3/6
    y = ["A", "none", "B", "A", "A", "none"]  # model: A 3/6, B 1/6, none 2/6
    # p_o = 3/6 (positions 0, 2, 4)
    # p_e = (3/6)(3/6) + (3/6)(1/6) + (0)(2/6) = 1/4 + 1/12 = 1/3
    # kappa = (1/2 - 1/3) / (2/3) = 1/4
    # SE = sqrt((1/2)(1/2) / (6 · (2/3)²)) = sqrt(0.25 / 2.6667) = 0.306186
    got = cohen_kappa(x, y)
    assert got.value == pytest.approx(0.25)
    assert (got.low, got.high) == pytest.approx((0.25 - 1.96 * 0.306186, 0.25 + 1.96 * 0.306186), abs=1e-6)
    # symmetric in the raters
    assert cohen_kappa(y, x) == got


def test_kappa_interval_is_clipped() -> None:
    # x = A B A B, y = A B A A: p_o = 3/4, p_e = (2/4)(3/4) + (2/4)(1/4) = 1/2, kappa = 1/2
    # SE = sqrt(0.75 · 0.25 / (4 · 0.25)) = 0.4330; 0.5 ± 0.8487 = [-0.3487, 1.3487] -> high clipped to 1
    got = cohen_kappa(["A", "B", "A", "B"], ["A", "B", "A", "A"])
    assert got.value == pytest.approx(0.5)
    assert got.low == pytest.approx(0.5 - 1.96 * math.sqrt(0.1875), abs=1e-9)
    assert got.high == 1.0


def test_kappa_edge_cases() -> None:
    # one category, the same for both raters: p_e = 1, kappa = 0/0
    same = cohen_kappa(["A"] * 5, ["A"] * 5)
    assert math.isnan(same.value) and math.isnan(same.low) and math.isnan(same.high)
    assert same.n == 5
    assert same.fmt() == "n/a (n=5)"
    # each rater one category, different ones: p_o = 0, p_e = 1·0 + 0·1 = 0, kappa = 0 (SE = 0)
    apart = cohen_kappa(["A"] * 4, ["B"] * 4)
    assert (apart.value, apart.low, apart.high) == (0.0, 0.0, 0.0)
    # perfect agreement over two categories: kappa 1, SE = 0
    perfect = cohen_kappa(["A", "B", "B"], ["A", "B", "B"])
    assert (perfect.value, perfect.low, perfect.high) == pytest.approx((1.0, 1.0, 1.0))
    # empty input, and input that is empty once missing labels are dropped
    for x, y in [([], []), ([None, "A"], ["B", np.nan])]:
        empty = cohen_kappa(x, y)
        assert math.isnan(empty.value) and empty.n == 0
    with pytest.raises(ValueError):
        cohen_kappa(["A", "B"], ["A"])


def test_kappa_matches_reference_on_random_data() -> None:
    rng = random.Random(7)
    for trial in range(40):
        n = rng.randint(1, 80)
        x_cats = ["A", "B", "tie"][: rng.randint(1, 3)]
        y_cats = ["A", "B", "none", 3][: rng.randint(1, 4)]  # mixed types: 3 is its own category
        x = [rng.choice(x_cats) for _ in range(n)]
        y = [rng.choice(y_cats) for _ in range(n)]
        want = ref_kappa(x, y)
        for a, b in [(x, y), (pd.Series(x), pd.Series(y)), (np.array(x, dtype=object), tuple(y))]:
            got = cohen_kappa(a, b)
            assert got.n == n
            if math.isnan(want[0]):
                assert math.isnan(got.value), trial
            else:
                assert (got.value, got.low, got.high) == pytest.approx(want, abs=1e-12), trial


# ---------------------------------------------------------------------------- confusion


def test_confusion_by_hand() -> None:
    x = ["A", "A", "B", "tie", "B", "A", None]
    y = ["A", "B", "B", "A", "none", "A", "A"]
    # listed rows A, B, tie (x), columns A, B, none, extra (y); pair (tie, A) counted, (None, A) dropped
    got = confusion(x, y, rows=["A", "B", "tie"], cols=["A", "B", "none", "extra"])
    want = pd.DataFrame(
        [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]],
        index=pd.Index(["A", "B", "tie"], dtype=object),
        columns=pd.Index(["A", "B", "none", "extra"], dtype=object),
    )
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got.to_numpy().dtype.kind == "i"


def test_confusion_drops_unlisted_and_keeps_order() -> None:
    # "tie" is not listed: the pairs with it are dropped; rows in the given (not sorted) order
    got = confusion(["B", "tie", "A", "B"], ["B", "B", "tie", "A"], rows=["B", "A"], cols=["B", "A"])
    assert list(got.index) == ["B", "A"] and list(got.columns) == ["B", "A"]
    assert got.to_numpy().tolist() == [[1, 1], [0, 0]]
    empty = confusion([], [], rows=["A"], cols=["A", "B"])
    assert empty.to_numpy().tolist() == [[0, 0]]
    with pytest.raises(ValueError):
        confusion(["A"], ["A"], rows=["A", "A"], cols=["A"])
    with pytest.raises(ValueError):
        confusion(["A"], [], rows=["A"], cols=["A"])


def test_confusion_matches_reference_on_random_data() -> None:
    rng = random.Random(3)
    x = [rng.choice(["A", "B", "C", "D"]) for _ in range(500)]
    y = [rng.choice(["A", "B", "none"]) for _ in range(500)]
    rows, cols = ["C", "A", "B"], ["A", "B", "none", "never"]
    want = [[0] * len(cols) for _ in rows]
    for a, b in zip(x, y, strict=True):
        if a in rows and b in cols:
            want[rows.index(a)][cols.index(b)] += 1
    got = confusion(pd.Series(x), pd.Series(y), rows, cols)
    assert got.to_numpy().tolist() == want
    # the diagonal over shared categories gives back the agreement count
    full = confusion(x, y, ["A", "B", "C", "D", "none"], ["A", "B", "C", "D", "none"])
    assert int(np.trace(full.to_numpy())) == sum(a == b for a, b in zip(x, y, strict=True))


# ---------------------------------------------------------------------------- krippendorff_alpha_nominal


def test_alpha_krippendorff_2011_example() -> None:
    # Unit 12 has one value: not pairable.  The other 11 units hold n = 40 pairable values.
    # Off-diagonal coincidences per unit, (m_u² - Σ_c n_uc²) / (m_u - 1):
    #   unit 2 {2,3,2,2}: (16 - 9 - 1) / 3 = 2;  unit 6 {1,2,3,4}: (16 - 4) / 3 = 4;
    #   unit 8 {1,1,2,1}: (16 - 9 - 1) / 3 = 2;  every other unit agrees: 0.   Σ_{c≠k} o_ck = 8
    # n_1 = 9, n_2 = 13, n_3 = 10, n_4 = 5, n_5 = 3;  Σ_{c≠k} n_c n_k = 40² - (81+169+100+25+9) = 1216
    # alpha = 1 - 39 · 8 / 1216 = 1 - 312/1216 = 0.743421  (the paper: 0.743)
    data = krippendorff_2011()
    got = krippendorff_alpha_nominal(data["unit"], data["value"])
    assert got.value == pytest.approx(1 - 312 / 1216)
    assert round(got.value, 3) == 0.743
    assert got.n == 11
    assert got.low <= got.value <= got.high <= 1.0
    # the same without the rows for missing cells, from plain lists, in another order
    present = data.dropna().sample(frac=1, random_state=1)
    again = krippendorff_alpha_nominal(list(present["unit"]), list(present["value"]))
    assert again.value == pytest.approx(got.value) and again.n == 11
    ratings = present.groupby("unit")["value"].apply(list).to_dict()
    assert ref_alpha(ratings) == pytest.approx(got.value)


def test_alpha_two_coders_by_hand() -> None:
    # units (a,a), (a,b), (b,b), (b,b): n = 8 values, n_a = 3, n_b = 5
    # only unit 2 disagrees: (2² - 1 - 1) / 1 = 2 off-diagonal coincidences
    # Σ_{c≠k} n_c n_k = 8² - 3² - 5² = 30;  alpha = 1 - 7 · 2 / 30 = 8/15
    got = krippendorff_alpha_nominal(["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4"], list("aaabbbbb"))
    assert got.value == pytest.approx(8 / 15)
    assert got.n == 4


def test_alpha_edge_cases() -> None:
    def undefined(e: Estimate, n: int) -> bool:
        return math.isnan(e.value) and math.isnan(e.low) and math.isnan(e.high) and e.n == n

    assert undefined(krippendorff_alpha_nominal([], []), 0)
    assert undefined(krippendorff_alpha_nominal([1, 2, 3], ["a", "b", "a"]), 0)  # no unit has two ratings
    assert undefined(krippendorff_alpha_nominal([1, 1, 2], ["a", None, "b"]), 0)  # missing values are dropped
    # every pairable value in one category: no expected disagreement (unit 3's lone "b" is not pairable)
    assert undefined(krippendorff_alpha_nominal([1, 1, 2, 2, 3], ["a", "a", "a", "a", "b"]), 2)
    # perfect agreement over two categories: 1, and every resample that is defined is 1 too
    perfect = krippendorff_alpha_nominal([1, 1, 2, 2, 2, 3, 3], ["a", "a", "b", "b", "b", "a", "a"])
    assert (perfect.value, perfect.low, perfect.high, perfect.n) == pytest.approx((1.0, 1.0, 1.0, 3))
    with pytest.raises(ValueError):
        krippendorff_alpha_nominal([1, 2], ["a"])


def test_alpha_matches_reference_on_random_data() -> None:
    rng = random.Random(11)
    for trial in range(30):
        n_units = rng.randint(1, 40)
        cats = ["A", "B", "none", 7][: rng.randint(1, 4)]
        units, values = [], []
        for u in range(n_units):
            for _ in range(rng.randint(0, 4)):
                units.append(f"unit-{u}")
                values.append(rng.choice(cats) if rng.random() > 0.1 else None)
        ratings: dict[Hashable, list[Hashable]] = defaultdict(list)
        for u, v in zip(units, values, strict=True):
            if v is not None:
                ratings[u].append(v)
        want = ref_alpha(ratings)
        got = krippendorff_alpha_nominal(pd.Series(units), pd.Series(values, dtype=object))
        assert got.n == sum(1 for vs in ratings.values() if len(vs) >= 2)
        if math.isnan(want):
            assert math.isnan(got.value), trial
        else:
            assert got.value == pytest.approx(want, abs=1e-12), trial
            if not math.isnan(got.low):
                assert got.low <= got.value + 1e-12 and got.value - 1e-12 <= got.high


def test_alpha_bootstrap_is_a_unit_bootstrap() -> None:
    # A loop bootstrap (resample units with replacement, 1000 times, another seed) with the
    # reference alpha lands close to the function's interval; and the interval is reproducible.
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, size=150)
    ratings = {
        u: [int(truth[u]) if rng.random() < 0.7 else int(rng.integers(0, 3)) for _ in range(int(rng.integers(2, 4)))]
        for u in range(150)
    }
    units = [u for u, vs in ratings.items() for _ in vs]
    values = [v for vs in ratings.values() for v in vs]
    got = krippendorff_alpha_nominal(units, values)
    assert got == krippendorff_alpha_nominal(units, values)
    loop_rng = random.Random(123)
    keys = list(ratings)
    boot = []
    for _ in range(1000):
        sample = [loop_rng.choice(keys) for _ in keys]
        boot.append(ref_alpha({i: ratings[u] for i, u in enumerate(sample)}))
    low, high = np.percentile(boot, [2.5, 97.5])
    assert got.low == pytest.approx(low, abs=0.03)
    assert got.high == pytest.approx(high, abs=0.03)
    assert got.low < got.value < got.high


def test_alpha_many_distinct_units_takes_the_other_bootstrap_path() -> None:
    # 30 categories and 3 ratings per unit: almost every unit has its own count vector, so the
    # bootstrap draws unit indices instead of multinomial counts; the point value is unaffected.
    rng = np.random.default_rng(2)
    units = np.repeat(np.arange(200), 3)
    values = rng.integers(0, 30, size=600)
    values[::3] = values[1::3]  # some agreement
    got = krippendorff_alpha_nominal(units, values)
    ratings: dict[Hashable, list[Hashable]] = defaultdict(list)
    for u, v in zip(units.tolist(), values.tolist(), strict=True):
        ratings[u].append(v)
    assert got.value == pytest.approx(ref_alpha(ratings))
    assert got.low < got.value < got.high


# ---------------------------------------------------------------------------- pairwise


def test_pairwise_by_hand() -> None:
    rows = [
        ("u1", "ann", "B"),  # replaced by ann's later row for u1
        ("u1", "bob", "A"),
        ("u2", "bob", "B"),
        ("u3", "bob", "B"),
        ("u1", "ann", "A"),
        ("u2", "ann", "B"),
        ("u3", "ann", "A"),
        ("u4", "ann", "B"),
        ("u5", "cy", "A"),  # cy shares no unit with anyone: no pair
        ("u2", "dan", "A"),
        ("u1", "dan", "A"),
    ]
    labels = pd.DataFrame(rows, columns=["item", "who", "label"])
    got = pairwise(labels, unit="item", rater="who", value="label")
    assert list(got.columns) == [
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
    assert list(zip(got["rater_1"], got["rater_2"], strict=True)) == [("ann", "bob"), ("ann", "dan"), ("bob", "dan")]
    # ann-bob on u1, u2, u3: (A,A) (B,B) (A,B): agreement 2/3
    # ann: A 2/3, B 1/3; bob: A 1/3, B 2/3; p_e = 2/9 + 2/9 = 4/9; kappa = (6/9 - 4/9)/(5/9) = 0.4
    # ann-dan and bob-dan on u1, u2: (A,A) (B,A): p_o = 1/2, p_e = (1/2)(1) + (1/2)(0) = 1/2, kappa = 0
    assert got["n"].tolist() == [3, 2, 2]
    assert got["agreement"].tolist() == pytest.approx([2 / 3, 0.5, 0.5])
    assert got["kappa"].tolist() == pytest.approx([0.4, 0.0, 0.0])
    first = got.iloc[0]
    assert (first["agreement_low"], first["agreement_high"]) == pytest.approx(ref_wilson(2, 3)[1:])
    assert (first["kappa_low"], first["kappa_high"]) == pytest.approx(ref_kappa(["A", "B", "A"], ["A", "B", "B"])[1:])


def test_pairwise_last_row_wins_even_when_missing() -> None:
    labels = pd.DataFrame(
        {
            "unit": [1, 1, 2, 2, 1],
            "rater": ["x", "y", "x", "y", "y"],
            "value": ["A", "A", "B", "A", None],  # y's last row for unit 1 clears the label
        }
    )
    got = pairwise(labels, "unit", "rater", "value")
    assert len(got) == 1 and got["n"].tolist() == [1]  # only unit 2 is rated by both
    assert got["agreement"].tolist() == [0.0]
    # x said B, y said A: p_o = 0, p_e = (B: 1·0) + (A: 0·1) = 0, kappa = (0 - 0) / (1 - 0) = 0
    assert got["kappa"].tolist() == [0.0]


def test_pairwise_no_shared_units() -> None:
    labels = pd.DataFrame({"u": [1, 2, 3], "r": ["a", "b", "c"], "v": ["A", "A", "B"]})
    got = pairwise(labels, "u", "r", "v")
    assert got.empty
    assert list(got.columns) == ["rater_1", "rater_2", "n"] + [
        f"{m}{s}" for m in ("agreement", "kappa") for s in ("", "_low", "_high")
    ]
    assert pairwise(labels.iloc[:0], "u", "r", "v").empty


def test_pairwise_matches_reference_on_random_data() -> None:
    rng = random.Random(5)
    raters = ["model", "ann", "bob", "cy", "dee"]
    rows = []
    for u in range(60):
        for r in raters:
            if rng.random() < 0.6:
                cats = ["A", "B", "none"] if r == "model" else ["A", "B"]
                rows.append((u, r, rng.choice(cats)))
                if rng.random() < 0.1:  # a later change of mind
                    rows.append((u, r, rng.choice(cats)))
    rng.shuffle(rows)
    labels = pd.DataFrame(rows, columns=["unit", "rater", "value"])
    last: dict[str, dict[int, str]] = defaultdict(dict)
    for u, r, v in rows:
        last[r][u] = v
    want = []
    for r1 in sorted(last):
        for r2 in sorted(last):
            shared = sorted(set(last[r1]) & set(last[r2]))
            if r1 < r2 and shared:
                x = [last[r1][u] for u in shared]
                y = [last[r2][u] for u in shared]
                k = sum(a == b for a, b in zip(x, y, strict=True))
                want.append((r1, r2, len(shared), *ref_wilson(k, len(shared)), *ref_kappa(x, y)))
    got = pairwise(labels, "unit", "rater", "value")
    assert len(got) == len(want) == 10
    for row, expected in zip(got.itertuples(index=False), want, strict=True):
        assert row[:3] == expected[:3]
        assert tuple(row[3:]) == pytest.approx(expected[3:], abs=1e-12)
    # and each row agrees with the scalar functions on the aligned labels
    wide = labels.drop_duplicates(["unit", "rater"], keep="last").pivot(index="unit", columns="rater", values="value")
    both = wide[["ann", "model"]].dropna()
    row = got[(got["rater_1"] == "ann") & (got["rater_2"] == "model")].iloc[0]
    kappa = cohen_kappa(both["ann"], both["model"])
    assert (row["kappa"], row["kappa_low"], row["kappa_high"]) == pytest.approx((kappa.value, kappa.low, kappa.high))
    assert row["agreement"] == pytest.approx(agreement(both["ann"], both["model"]).value)


# ---------------------------------------------------------------------------- purity


def test_metrics_imports_only_stdlib_numpy_pandas() -> None:
    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "math", "collections", "dataclasses", "typing", "numpy", "pandas"}
