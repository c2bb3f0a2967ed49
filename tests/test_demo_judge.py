"""The demo judge: a tiny trained model that decides, with a distribution known in advance.

The unit tests check the traces it is trained on and its arithmetic. The slow tests build it
once (the ``demo_judge`` fixture), judge real LLMBar and RM-Bench items through the three real
backends, and hold the figures to what the model's own logits predict, computed here from the
stored judgments' text with transformers (4-sigma binomial bounds).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rrm_ui.dev.demo_judge import CLOSE, DemoSpec, _traces, flip_probability, sharpen
from rrm_ui.dev.tiny_model import build_tokenizer
from rrm_ui.domain import Compute, Item, Sampling, Status, Verdict
from rrm_ui.protocol import RRM_FORMAT, split_think

BACKENDS = ["vllm", "openai", "transformers"]
T = 0.6  # the paper's temperature and Sampling's default


@pytest.fixture(scope="module")
def tok():  # noqa: ANN201
    return build_tokenizer()


# --- the traces and the arithmetic ------------------------------------------------------------


def test_only_two_tokens_are_left_to_chance(tok) -> None:  # noqa: ANN001
    t = _traces(tok, DemoSpec(), seed=0)
    nl = tok.encode("\n", add_special_tokens=False)
    # after "<think>\n", two tokens of context decide the next one everywhere but at the two draws
    nexts: dict[tuple[int, int], set[int]] = {}
    for long in (False, True):
        for first in (True, False):
            seq = [tok.convert_tokens_to_ids("<think>"), *nl, *t.completion(long, first)]
            for k in range(2, len(seq)):
                nexts.setdefault((seq[k - 2], seq[k - 1]), set()).add(seq[k])
    branching = {ctx: n for ctx, n in nexts.items() if len(n) > 1}
    assert len(branching) == 2
    assert {t.short[0], t.long[0]} in branching.values()
    assert set(t.digits) in branching.values()
    # the reasoning texts repeat no token, so the current token decides the next
    body = t.short + t.long
    assert len(set(body)) == len(body)
    assert len(t.short) >= 20 and len(t.long) >= 90


@pytest.mark.parametrize(("long", "first"), [(False, True), (False, False), (True, True), (True, False)])
def test_each_trace_parses_ok_under_the_official_rule(tok, long: bool, first: bool) -> None:  # noqa: ANN001
    t = _traces(tok, DemoSpec(), seed=0)
    text = tok.decode(t.completion(long, first), skip_special_tokens=True)
    assert text.count("</think>") == 1 and text.endswith("\\boxed{Assistant " + ("1" if first else "2") + "}")
    parsed = RRM_FORMAT.parse(*split_think(text))
    assert parsed.status is Status.OK
    assert parsed.verdict is (Verdict.A if first else Verdict.B)
    assert CLOSE in text


def test_sharpening_and_flips_match_a_direct_computation() -> None:
    for p in (0.55, 0.7, 0.9):
        for temp in (0.6, 1.0, 2.0):
            w1, w2 = p ** (1 / temp), (1 - p) ** (1 / temp)
            assert math.isclose(sharpen(p, temp), w1 / (w1 + w2), rel_tol=1e-12)
        # same position twice: first-first or second-second
        assert math.isclose(flip_probability(p), p * p + (1 - p) * (1 - p))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"p_first": 1.0}, "p_first"), ({"long_share": 0}, "long_share"), ({"short_tokens": 100}, "short_tokens")],
)
def test_a_bad_spec_is_refused_with_its_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemoSpec(**kwargs)


def test_the_command_line_offers_the_demo_judge() -> None:
    import argparse

    from rrm_ui.cli import dev

    parser = argparse.ArgumentParser()
    dev.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dev", "demo-judge", "out", "--p-first", "0.8", "--long-share", "0.2"])
    assert (args.out_dir, args.p_first, args.long_share) == ("out", 0.8, 0.2)
    assert args.handler is dev.demo_judge


# --- the built model ----------------------------------------------------------------------------


class Predictor:
    """The demo judge's own next-token probabilities, read with transformers from a stored trace."""

    def __init__(self, path: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)  # the prompt, as the backends render it
        # the generated text, back to the ids the model wrote (tokenizer.json as saved; AutoTokenizer
        # loads it as Qwen2Tokenizer, which splits " 1" into " " and "1")
        self.written = PreTrainedTokenizerFast.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.one, self.two = (self.written.encode(d, add_special_tokens=False)[0] for d in (" 1", " 2"))
        self.next = cache(self._next)

    def prompt(self, item: Item, a: int, b: int) -> str:
        messages = RRM_FORMAT.messages(item.query, item.responses[a], item.responses[b])
        return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _next(self, prompt: str, written: str) -> tuple[float, ...]:
        ids = self.tok.encode(prompt, add_special_tokens=False) + self.written.encode(written, add_special_tokens=False)
        with self.torch.no_grad():
            logits = self.model(input_ids=self.torch.tensor([ids])).logits[0, -1]
        return tuple(self.torch.softmax(logits / T, -1).tolist())

    def p_first(self, prompt: str, reasoning: str) -> float:
        """P(\\boxed{Assistant 1}) at T after this reasoning, given the other digit is the alternative."""
        probs = self.next(prompt, reasoning.strip() + CLOSE)
        return probs[self.one] / (probs[self.one] + probs[self.two])

    def p_token(self, prompt: str, first_text: str) -> float:
        """P(the first token of ``first_text``) at T right after the prompt."""
        return self.next(prompt, "")[self.written.encode(first_text.strip(), add_special_tokens=False)[0]]


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return 1.0 - sum(math.comb(n, m) * p**m * (1 - p) ** (n - m) for m in range(k))


def within(count: float, probs: list[float], sigmas: float = 4.0) -> bool:
    mean = sum(probs)
    sd = math.sqrt(sum(p * (1 - p) for p in probs))
    return abs(count - mean) <= sigmas * sd + 1e-9


@pytest.fixture(scope="session")
def predictor(demo_judge: Path) -> Predictor:
    return Predictor(demo_judge)


@pytest.fixture(scope="session")
def llmbar_items(shared_data: Path) -> list[Item]:
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:24]
    return [Item(f"llmbar-natural-{k}", r["input"], (r["output_1"], r["output_2"])) for k, r in enumerate(rows)]


@pytest.mark.slow
def test_the_built_judge_learned_the_distribution_it_was_given(demo_judge: Path) -> None:
    info = json.loads((demo_judge / "demo-judge.json").read_text())
    spec = DemoSpec()
    assert info["name"] == "rrm-ui-demo-judge" and "not about quality" in info["note"]
    assert "not about quality" in (demo_judge / "README.md").read_text()
    assert "not about quality" in json.loads((demo_judge / "config.json").read_text())["rrm_ui_demo_judge"]
    m = info["measured"]
    for kind in ("short", "long"):
        assert abs(m["mean"][f"first_{kind}_T1"] - spec.p_first) < 0.05
        assert abs(m["mean"][f"first_{kind}_T0.6"] - sharpen(spec.p_first, 0.6)) < 0.06
        assert m["min"][f"digit_{kind}_T1"] > 0.99  # nothing but the two digits
        assert m["min"][f"follows_{kind}_T1"] > 0.7  # the rest as written (T=1 strays a little: docs)
        assert m["min"][f"follows_{kind}_T0.6"] > 0.99
    assert abs(m["mean"]["long_T1"] - spec.long_share) < 0.05
    assert abs(m["mean"]["long_T0.6"] - sharpen(spec.long_share, 0.6)) < 0.06
    assert m["min"]["short_or_long_T1"] > 0.99


@pytest.fixture(scope="session")
def demo_backends(demo_judge: Path, demo_vllm_server, loop):  # noqa: ANN001, ANN201
    from rrm_ui.backends.hf_transformers import TransformersBackend
    from rrm_ui.backends.openai_http import OpenAIBackend
    from rrm_ui.backends.vllm_engine import VLLMBackend

    made = {
        "vllm": VLLMBackend(
            str(demo_judge), dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=8192
        ),
        "openai": OpenAIBackend([demo_vllm_server.url]),
        "transformers": TransformersBackend(str(demo_judge), device="cpu"),
    }
    for b in made.values():
        loop.run(b.start())
    yield made
    for b in made.values():
        loop.run(b.close())


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS)
def test_votes_flips_and_truncation_follow_the_distribution(
    name: str,
    demo_backends: dict[str, Any],
    predictor: Predictor,
    demo_judge: Path,
    llmbar_items: list[Item],
    loop: Any,
) -> None:
    from rrm_ui.engine.judge import Judge
    from rrm_ui.engine.runner import judge_items

    info = json.loads((demo_judge / "demo-judge.json").read_text())
    short, long = info["completion_tokens"]["short"], info["completion_tokens"]["long"]
    budget = (short + long) // 2  # the short reasoning fits, the long one is cut off
    # no seed: the engine seeds sample k of every item alike, and a content-blind judge then draws
    # the same way on every item (fully correlated samples, not binomial ones)
    judge = Judge(
        demo_backends[name], RRM_FORMAT, sampling=Sampling(temperature=T, max_tokens=budget, seed=None),
        compute=Compute(votes=2, swap=True),
    )  # fmt: skip

    async def run() -> list:
        return [r async for r in judge_items(judge, llmbar_items, items_in_flight=8)]

    results = loop.run(run(), timeout=900)
    by_id = {it.id: it for it in llmbar_items}
    judgments = [(r.id, j) for r in results for p in r.pairs for j in p.judgments]
    assert len(judgments) == 4 * len(llmbar_items)
    assert {j.status for _, j in judgments} <= {Status.OK, Status.TRUNCATED}
    ok = [(i, j) for i, j in judgments if j.status is Status.OK]
    cut = [(i, j) for i, j in judgments if j.status is Status.TRUNCATED]
    assert ok and cut
    for _, j in ok:
        assert j.finish_reason == "stop" and j.completion_tokens < budget
        assert j.answer.strip() in {"\\boxed{Assistant 1}", "\\boxed{Assistant 2}"}
        assert j.verdict is (Verdict.A if j.answer.strip().endswith("1}") else Verdict.B)
    # the judgments that fit are the short reasoning; at T a sample now and then leaves the trained
    # trace for a token or two and still closes in budget (seen once, on transformers: 31 tokens against
    # 28), so this is a share, not every one
    on_trace = sum(j.completion_tokens <= short for _, j in ok)
    assert on_trace >= 0.9 * len(ok), (on_trace, len(ok), sorted(j.completion_tokens for _, j in ok))
    for _, j in cut:
        assert j.finish_reason == "length" and j.completion_tokens == budget and j.verdict is None
    long_text = cut[0][1].reasoning

    # truncation: the long reasoning is drawn with the model's P(first token) at T
    p_long = [predictor.p_token(predictor.prompt(by_id[i], j.a, j.b), long_text) for i, j in judgments]
    assert within(len(cut), p_long), (len(cut), sum(p_long))
    assert abs(sum(p_long) / len(p_long) - sharpen(info["intended"]["long_share"], T)) < 0.06

    # votes: the first response shown wins with the model's P(Assistant 1) after that reasoning
    p_first = [predictor.p_first(predictor.prompt(by_id[i], j.a, j.b), j.reasoning) for i, j in ok]
    firsts = sum(j.verdict is Verdict.A for _, j in ok)
    assert within(firsts, p_first), (firsts, sum(p_first), len(ok))
    assert abs(sum(p_first) / len(p_first) - sharpen(info["intended"]["p_first"], T)) < 0.06

    # flips: sample k of one order against sample k of the other; the same position winning twice
    # is a flip, with P = q_f q_b + (1 - q_f)(1 - q_b)
    flips, p_flip = 0, []
    for r in results:
        js = {(j.a, j.sample): j for j in r.pairs[0].judgments}
        for k in range(2):
            f, b = js[(0, k)], js[(1, k)]
            if f.status is Status.OK and b.status is Status.OK:
                qf = predictor.p_first(predictor.prompt(by_id[r.id], 0, 1), f.reasoning)
                qb = predictor.p_first(predictor.prompt(by_id[r.id], 1, 0), b.reasoning)
                flips += f.verdict is b.verdict
                p_flip.append(qf * qb + (1 - qf) * (1 - qb))
    assert p_flip and within(flips, p_flip), (flips, sum(p_flip), len(p_flip))
    # the engine's own flag: some pairs change winner with the order
    assert any(r.pairs[0].position_consistent is False for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS)
def test_knockout_and_round_robin_crown_a_champion(name: str, demo_backends, shared_data: Path, loop) -> None:  # noqa: ANN001
    from rrm_ui.engine.judge import Judge
    from rrm_ui.engine.runner import judge_item

    r = json.loads((shared_data / "rm-bench/chat_filtered.json").read_text())[0]
    item = Item(f"rm-bench-{r['id']}", r["prompt"], (r["chosen"][0], *r["rejected"]))
    judge = Judge(demo_backends[name], RRM_FORMAT, sampling=Sampling(max_tokens=256, seed=3), compute=Compute())

    ko = loop.run(judge_item(judge, item, "knockout"))
    assert len(ko.pairs) == 3  # four entrants: two semi-finals and a final
    assert all(j.status is Status.OK for p in ko.pairs for j in p.judgments)
    assert ko.winner is not None and ko.winner == ko.ranking[0]
    final = ko.bracket[-1][0]
    assert ko.winner in (final["i"], final["j"])

    rr = loop.run(judge_item(judge, item, "round-robin"))
    assert len(rr.pairs) == 6
    assert all(j.status is Status.OK for p in rr.pairs for j in p.judgments)
    assert sorted(rr.ranking) == [0, 1, 2, 3]
    wins = {k: 0 for k in range(4)}
    for p in rr.pairs:
        wins[p.winner] += 1
    assert rr.ratings["wins"] == pytest.approx({k: float(v) for k, v in wins.items()})
    assert set(rr.ratings["elo"]) == set(rr.ratings["bradley_terry"]) == {0, 1, 2, 3}
    if rr.winner is not None:
        assert rr.winner == rr.ranking[0] and wins[rr.winner] == max(wins.values())


@pytest.mark.slow
def test_a_stored_batch_over_llmbar_matches_the_report_and_the_distribution(
    demo_judge: Path, shared_data: Path, tmp_path: Path
) -> None:
    """``rrm-ui judge --dataset`` over 40 LLMBar pairs, both orders: the report's figures against the
    stored judgments recomputed here, and both against what the documented distribution predicts."""
    import subprocess
    import sys

    from rrm_ui.config import Settings
    from rrm_ui.services import open_repository

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "rrm_ui", *args], capture_output=True, text=True,
                              timeout=900, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    raw = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:40]
    data = tmp_path / "llmbar.json"
    data.write_text(json.dumps(raw))
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    info = json.loads((demo_judge / "demo-judge.json").read_text())
    budget = (info["completion_tokens"]["short"] + info["completion_tokens"]["long"]) // 2
    cli("import", str(data), "--db", db, "--preset", "llmbar", "--name", "llmbar")
    cli("judge", "--dataset", "llmbar", "--db", db, "--run", "demo", "--backend", "vllm", "--model", str(demo_judge),
        "--swap", "--votes", "1", "--temperature", str(T), "--max-tokens", str(budget), "--quiet")  # fmt: skip
    report = json.loads(
        cli("report", "--db", db, "--dataset", "llmbar", "--reference", "gold", "--format", "json").stdout
    )

    repo = open_repository(Settings(database_url=db))
    items = repo.frame("items").set_index("id")
    js = repo.frame("judgments")
    assert len(js) == 2 * len(raw)
    # the trained path (short or long trace, then the verdict) is followed with probability follows_* at
    # T 0.6, measured when the model was built (0.9997 short, 0.9988 long): a sample that leaves it can end
    # without a verdict. About 0.05 of 80 samples do; a count this unlikely (under 1e-4) would be a model fault
    off_path = int((~js["status"].isin(["ok", "truncated"])).sum())
    low = info["measured"]["min"]
    p_off = 1 - min(low["follows_short_T0.6"], low["follows_long_T0.6"])
    assert binomial_tail(off_path, len(js), p_off) > 1e-4, (off_path, p_off, sorted(set(js["status"])))
    assert set(js["status"]) <= {"ok", "truncated", "no_verdict", "invalid"}
    # independently: the gold response (lower tier), each order's verdict, the item's winner
    gold = {i: min(range(2), key=lambda k: tiers[k]) for i, tiers in items["gold_tiers"].items()}
    assert [gold[i] for i in sorted(gold)] == [0 if r["label"] == 1 else 1 for r in raw]
    winner_of = {}
    flips = both = 0
    for item_id, g in js.groupby("item_id"):
        picks = {}  # order (a first) -> the response it picked
        for r in g.itertuples():
            if r.status == "ok":
                picks[r.a] = r.a if r.verdict == "A" else r.b
        if len(picks) == 2:
            both += 1
            flips += picks[0] != picks[1]
        votes = list(picks.values())
        winner_of[item_id] = votes[0] if votes and all(v == votes[0] for v in votes) else None
    agree = sum(winner_of[i] == gold[i] for i in gold)
    truncated = int((js["status"] == "truncated").sum())

    # the report says the same
    (row,) = [r for r in report["by_reference"] if r["reference"] == "gold" and r["run"] == "demo"]
    assert (row["decisive"], row["agree"]) == (len(raw), agree)
    (fl,) = report["flip_rate"]["by_run"]
    assert (fl["inconsistent"], fl["judged_both_orders"]) == (flips, both)
    (tot,) = report["compute"]
    assert (tot["judgments"], tot["truncated"]) == (len(js), truncated)

    # ... and falls where the distribution puts it (4 sigma): q = P(first shown wins) at T
    q, p_long = info["measured"]["mean"]["first_short_T0.6"], info["measured"]["mean"]["long_T0.6"]
    assert within(truncated, [p_long] * len(js)), (truncated, p_long * len(js))
    assert within(flips, [q * q + (1 - q) * (1 - q)] * both), (flips, both)
    # gold wins an item when both orders are ok and pick it (q(1-q), whoever gold is), or when one
    # order is cut off and the other picks it (l(1-l) q + l(1-l)(1-q)): content-blind
    p_agree = (1 - p_long) ** 2 * q * (1 - q) + p_long * (1 - p_long)
    assert within(agree, [p_agree] * len(raw)), (agree, p_agree * len(raw))
    decided = [i for i in gold if winner_of[i] is not None]
    assert decided and within(sum(winner_of[i] == gold[i] for i in decided), [0.5] * len(decided))
