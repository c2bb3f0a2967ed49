"""Build the demo judge offline: a tiny model TRAINED to write RRM-format judgments that decide.

rrm-ui demo judge: its verdicts are not about quality. It is the tiny model's shape and
tokenizer (rrm_ui.dev.tiny_model), trained on CPU for a minute or two on synthetic traces
conditioned on the real RRM prompt (``RRMFormat().messages(...)`` through the chat template).
Every trace is::

    <think>\\n HEADER BODY \\n</think>\\n\\n\\boxed{Assistant D}<eos>

and two tokens are drawn; everything else follows from them:

- the first token after ``<think>\\n`` picks the length: the long header (a long BODY, more
  than ``threshold`` completion tokens) with probability ``long_share``, else the short one;
- the digit ``D`` after ``\\boxed{Assistant`` is ``1`` with probability ``p_first`` and ``2``
  otherwise, whatever the content and the length: a known position bias, content-blind.

So with the paper's ``max_tokens`` every sample ends ``ok``; a budget between the two lengths
truncates a ``long_share`` of them; the first response shown wins with ``p_first``, and with
both orders the verdict flips with the order (the same position wins twice) with
``p_first**2 + (1 - p_first)**2``. Sampling at temperature ``T`` sharpens the two draws:
``softmax(logits / T)``. What training really learned (the logits on held-out prompts, and
those probabilities at T=1 and T=0.6) is measured after training and written to
``demo-judge.json`` beside the weights; docs/demo-judge.md has the figures.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rrm_ui.dev.tiny_model import build_tokenizer, qwen2_config

NAME = "rrm-ui-demo-judge"
STEPS = 60  # training steps of build_demo_judge
NOTE = "rrm-ui demo judge: its verdicts are not about quality"
INFO_FILE = "demo-judge.json"
SHORT_HEADER = "Here the short decision, which is not about quality:"
LONG_HEADER = "Let me analyze both responses in detail; this judgment does NOT evaluate content."
CLOSE = "</think>\\boxed{Assistant"
DIGITS = (" 1", " 2")
END = "}"
# Words for the synthetic prompts the demo judge is trained on (besides random letters and digits).
_TEXT_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "you",
    "with",
    "on",
    "as",
    "are",
    "this",
    "be",
    "at",
    "or",
    "have",
    "from",
    "by",
    "not",
    "what",
    "all",
    "first",
    "response",
    "second",
    "answer",
    "instruction",
    "query",
    "asks",
    "list",
    "short",
    "long",
    "detail",
    "helpful",
    "accurate",
    "write",
    "story",
    "poem",
    "email",
    "code",
    "function",
    "python",
    "number",
    "year",
    "people",
    "time",
    "day",
    "water",
    "city",
    "country",
    "explain",
    "describe",
    "summarize",
    "translate",
    "give",
    "example",
    "please",
    "should",
    "would",
    "could",
    "how",
    "why",
    "when",
    "which",
    "who",
    "where",
    "there",
    "their",
    "they",
    "we",
    "he",
    "she",
    "his",
    "her",
    "its",
    "more",
    "most",
    "many",
    "some",
    "any",
    "each",
    "other",
]
_NOT_WORDS = {"A", "B", "s", "def", "etc", "main", "return", "sum", "Assistant", "assistant", "assistants"}


def _words(tok: Any) -> list[str]:
    """Words of the RRM prompt that the tokenizer reads as one token (with a leading space)."""
    import re

    from rrm_ui.dev.tiny_model import _corpus

    found = sorted(set(re.findall(r"[A-Za-z]+", " ".join(_corpus()[:3]))) - _NOT_WORDS)
    return [w for w in found if len(tok.encode(" " + w, add_special_tokens=False)) == 1]


@dataclass(frozen=True)
class DemoSpec:
    """The distribution the demo judge is trained to sample from (see the module docstring)."""

    p_first: float = 0.7  # P(\boxed{Assistant 1}), the first response shown, at temperature 1
    long_share: float = 0.3  # P(the long reasoning) at temperature 1
    short_tokens: int = 20  # tokens of the short reasoning (the header and words)
    long_tokens: int = 90  # tokens of the long reasoning

    def __post_init__(self) -> None:
        for name in ("p_first", "long_share"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1, got {v}")
        if not 8 <= self.short_tokens < self.long_tokens:
            raise ValueError(f"need 8 <= short_tokens < long_tokens, got {self.short_tokens}, {self.long_tokens}")


def sharpen(p: float, temperature: float) -> float:
    """P of one of two outcomes at ``temperature`` when ``p`` is its probability at T=1."""
    a, b = math.log(p) / temperature, math.log(1.0 - p) / temperature
    return 1.0 / (1.0 + math.exp(b - a))


def flip_probability(p_first: float) -> float:
    """P(the verdict flips with the order): both orders pick the same position."""
    return p_first**2 + (1.0 - p_first) ** 2


@dataclass
class _Traces:
    """Token ids of the two deterministic parts and the two drawn tokens."""

    short: list[int]  # header + body, starting with the drawn length token
    long: list[int]
    close: list[int]
    digits: tuple[int, int]
    end: list[int]
    eos: int

    def completion(self, long: bool, first: bool) -> list[int]:
        body = self.long if long else self.short
        return [*body, *self.close, self.digits[0 if first else 1], *self.end, self.eos]


def _traces(tok: Any, spec: DemoSpec, seed: int) -> _Traces:
    """Two reasoning texts in which the current token decides the next one.

    No token occurs twice in the two texts (words are drawn with ``seed`` without
    replacement), so a tiny model learns them as a lookup; only the newline of the close
    needs the token before it. The first token (short or long) and the verdict digit are
    the two draws.
    """
    rng = random.Random(seed)
    enc = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    close, end = enc(CLOSE), enc(END)
    digits = tuple(enc(d) for d in DIGITS)
    if any(len(d) != 1 for d in digits):
        raise RuntimeError(f"the verdict digits must be one token each, got {digits}")
    used = set(close) | set(end) | {d[0] for d in digits}
    bodies = []
    for header in (SHORT_HEADER, LONG_HEADER):
        ids = enc(header)
        if len(set(ids)) != len(ids) or used & set(ids):
            raise RuntimeError(f"the header {header!r} repeats a token")
        used |= set(ids)
        bodies.append(ids)
    pool = [w for w in _words(tok) if enc(" " + w)[0] not in used]
    rng.shuffle(pool)
    for body, n_tokens in zip(bodies, (spec.short_tokens, spec.long_tokens), strict=True):
        while len(body) < n_tokens:
            if not pool:
                raise RuntimeError(f"not enough distinct words for {spec.long_tokens} + {spec.short_tokens} tokens")
            body += enc(" " + pool.pop())
    short, long = bodies
    return _Traces(short, long, close, (digits[0][0], digits[1][0]), end, tok.eos_token_id)


def _random_text(rng: random.Random, n_words: int, words: tuple[str, ...] = _TEXT_WORDS) -> str:
    out = []
    for _ in range(n_words):
        r = rng.random()
        if r < 0.55:
            w = rng.choice(words)
        elif r < 0.8:
            w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
        elif r < 0.88:
            w = str(rng.randint(0, 10 ** rng.randint(1, 5)))
        elif r < 0.94:
            w = rng.choice(".,;:!?()[]{}-*#'\"/=+<>")
        else:
            w = rng.choice(["\n", "\n\n", "\n- ", "\n1. "])
        if rng.random() < 0.1:
            w = w.capitalize()
        out.append(w)
    return " ".join(out)


def _prompt_ids(tok: Any, rng: random.Random, *, long: bool) -> list[int]:
    from rrm_ui.protocol.rrm import RRMFormat

    hi = 400 if long else 90
    messages = RRMFormat().messages(
        _random_text(rng, rng.randint(1, hi // 2)),
        _random_text(rng, rng.randint(0, hi)),
        _random_text(rng, rng.randint(0, hi)),
    )
    return prompt_ids(tok, messages)


def prompt_ids(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    """The chat template with the generation prompt (ending ``<think>\\n``), as token ids."""
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tok.encode(text, add_special_tokens=False)


def _exact_draws(n: int, p: float, rng: random.Random) -> list[bool]:
    k = round(p * n)
    draws = [True] * k + [False] * (n - k)
    rng.shuffle(draws)
    return draws


def build_demo_judge(
    out_dir: str | Path,
    *,
    seed: int = 0,
    p_first: float = DemoSpec.p_first,
    long_share: float = DemoSpec.long_share,
    short_tokens: int = DemoSpec.short_tokens,
    long_tokens: int = DemoSpec.long_tokens,
    steps: int = STEPS,
    batch: int = 16,
    lr: float = 1e-2,
    hidden: int = 128,
    threads: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Train the demo judge and write it (weights, tokenizer, README.md, demo-judge.json) to ``out_dir``.

    ``progress(fraction, message)`` is called as training goes (for a progress bar).
    """
    try:
        import torch
        from transformers import AutoTokenizer, Qwen2ForCausalLM
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(
            f"building the demo judge needs torch and transformers ({exc}): pip install -e '.[cpu]'"
        ) from exc

    spec = DemoSpec(p_first, long_share, short_tokens, long_tokens)
    started = time.monotonic()
    say = progress or (lambda _f, _m: None)
    out = Path(out_dir)
    tok = build_tokenizer(out)  # writes the reasoning: these ids are what the model learns to generate
    traces = _traces(tok, spec, seed)
    rng = random.Random(seed + 1)
    n = steps * batch
    firsts, longs = _exact_draws(n, p_first, rng), _exact_draws(n, long_share, rng)

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        config = qwen2_config(tok, hidden=hidden, heads=hidden // 64, tie_embeddings=False)
        config.architectures = ["Qwen2ForCausalLM"]
        config.save_pretrained(out)
        # the prompts as the backends will tokenize them: with config.json saying qwen2, transformers 5
        # loads this folder's tokenizer as Qwen2Tokenizer, whose pre-tokenizer splits digits its own way
        serving = AutoTokenizer.from_pretrained(out)
        model = Qwen2ForCausalLM(config)
        with torch.no_grad():  # start as a pure lookup of the current token: the prompt adds nothing yet
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
        warm = max(1, steps // 15)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
        )
        losses = []
        for step in range(steps):
            # One prompt per step: its keys and values are computed once, without gradients, and
            # shared by the batch's completions (the prompt's last token, which predicts the
            # length token, goes through with them). Its length varies like real items'.
            prompt = _prompt_ids(serving, rng, long=rng.random() < 0.2)
            with torch.no_grad():
                cache = model(input_ids=torch.tensor([prompt[:-1]]), use_cache=True).past_key_values
            cache.batch_repeat_interleave(batch)
            comps = [traces.completion(longs[k], firsts[k]) for k in range(step * batch, (step + 1) * batch)]
            width = 1 + max(len(c) for c in comps)
            ids = torch.full((batch, width), tok.pad_token_id, dtype=torch.long)
            labels = torch.full((batch, width), -100, dtype=torch.long)
            mask = torch.zeros((batch, len(prompt) - 1 + width), dtype=torch.long)
            mask[:, : len(prompt) - 1] = 1
            for r, c in enumerate(comps):
                ids[r, 0] = prompt[-1]
                ids[r, 1 : 1 + len(c)] = torch.tensor(c)
                labels[r, 1 : 1 + len(c)] = torch.tensor(c)
                mask[r, len(prompt) - 1 : len(prompt) + len(c)] = 1
            loss = model(input_ids=ids, attention_mask=mask, past_key_values=cache, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            say((step + 1) / steps * 0.9, f"training step {step + 1}/{steps}, loss {losses[-1]:.4f}")
        model.eval()
        say(0.91, "calibrating the two draws")
        calibration = calibrate(
            model, traces, spec, [_prompt_ids(serving, random.Random(20_000 + k), long=k % 2 == 1) for k in range(8)]
        )
        say(0.95, "measuring the learned distribution on other prompts")
        measured = measure(
            model, tok, traces, [_prompt_ids(serving, random.Random(10_000 + k), long=k % 2 == 1) for k in range(8)]
        )
    finally:
        torch.set_num_threads(old_threads)

    model.config.rrm_ui_demo_judge = NOTE  # beside the weights' own config: config.json says what it is
    model.save_pretrained(out)
    build_s = time.monotonic() - started
    info = {
        "name": NAME,
        "note": NOTE,
        "seed": seed,
        "intended": {
            **asdict(spec),
            "verdict": "content-blind: \\boxed{Assistant 1} with p_first, whatever the responses",
            "flip_probability_T1": round(flip_probability(p_first), 4),
            "p_first_T0.6": round(sharpen(p_first, 0.6), 4),
            "long_share_T0.6": round(sharpen(long_share, 0.6), 4),
        },
        "completion_tokens": {  # including the end-of-sequence token
            "short": len(traces.completion(False, True)),
            "long": len(traces.completion(True, True)),
        },
        "tokens": {
            "short_first": traces.short[0],
            "long_first": traces.long[0],
            "digit_1": traces.digits[0],
            "digit_2": traces.digits[1],
        },
        "calibration": calibration,
        "measured": measured,
        "training": {
            "steps": steps,
            "batch": batch,
            "lr": lr,
            "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 6),
            "build_seconds": round(build_s, 1),
        },
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(
        f"# {NAME}\n\n{NOTE}.\n\nA tiny Qwen2 model trained by `rrm-ui dev demo-judge` to write RRM-format "
        "judgments: reasoning of two lengths, then `\\boxed{Assistant 1}` or `\\boxed{Assistant 2}` drawn "
        f"with P(Assistant 1) = {p_first} at temperature 1, whatever the responses say. For wiring, demos "
        f"and tests only. {INFO_FILE} has the intended and the measured distribution; see docs/demo-judge.md.\n"
    )
    say(1.0, f"demo judge written to {out} in {build_s:.0f} s")
    return out


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def calibrate(model: Any, traces: _Traces, spec: DemoSpec, prompts: list[list[int]]) -> dict[str, float]:
    """Set the two draws' log-odds to the intended ones, on ``prompts``; return the shifts made.

    Training learns ``p_first`` and ``long_share`` only up to its sampling noise (a few
    hundredths). At each draw the model's last hidden state barely depends on the prompt,
    so adding ``delta * h / |h|^2`` (``h`` its mean over ``prompts``) to the output row of
    the first of the two tokens moves their log-odds there by ``delta`` and elsewhere by
    ``delta`` times a cosine, near nothing.
    """
    import torch

    head = model.get_output_embeddings().weight
    draws = {
        "long_share": (traces.long[0], traces.short[0], spec.long_share, 0),
        "p_first": (traces.digits[0], traces.digits[1], spec.p_first, len(traces.short) + len(traces.close)),
    }
    finals = []
    for p in prompts:
        with torch.no_grad():  # the final norm's output: what the head reads (the head is not tied)
            finals.append((len(p) - 1, model.model(input_ids=torch.tensor([p + traces.completion(False, True)]))))
    shifts = {}
    for name, (a, b, target, offset) in draws.items():
        h = torch.stack([out.last_hidden_state[0, at + offset] for at, out in finals])
        with torch.no_grad():
            delta = _logit(target) - float((h @ head[a] - h @ head[b]).mean())
            h_mean = h.mean(0)
            head[a] += delta * h_mean / h_mean.dot(h_mean)  # the mean log-odds move by delta exactly
        shifts[name] = round(delta, 4)
    return shifts


def measure(model: Any, tok: Any, traces: _Traces, prompts: list[list[int]]) -> dict[str, Any]:
    """The learned logits of the two draws on ``prompts``, and the sure-ness of every other step.

    For each prompt: P(long) and P(Assistant 1 | short), P(Assistant 1 | long) at T=1 and
    T=0.6 (softmax over the whole vocabulary), and the probability, at T=1, that the model
    follows the deterministic part of each trace token by token.
    """
    import torch

    def logprobs(seq: list[int]) -> Any:
        with torch.no_grad():
            return model(input_ids=torch.tensor([seq])).logits[0].float()

    rows = []
    for p in prompts:
        row: dict[str, float] = {}
        for long in (False, True):
            c = traces.completion(long, True)
            logits = logprobs(p + c)
            name = "long" if long else "short"
            at = len(traces.long if long else traces.short) + len(traces.close)  # the digit in c
            for temp, tag in ((1.0, "T1"), (0.6, "T0.6")):
                if long:
                    probs0 = torch.softmax(logits[len(p) - 1] / temp, -1)
                    row[f"long_{tag}"] = float(probs0[traces.long[0]])
                    row[f"short_or_long_{tag}"] = float(probs0[traces.long[0]] + probs0[traces.short[0]])
                probs = torch.softmax(logits[len(p) - 1 + at] / temp, -1)
                row[f"first_{name}_{tag}"] = float(probs[traces.digits[0]])
                row[f"digit_{name}_{tag}"] = float(probs[traces.digits[0]] + probs[traces.digits[1]])
            for temp, tag in ((1.0, "T1"), (0.6, "T0.6")):
                lp = torch.log_softmax(logits / temp, -1)
                sure = sum(float(lp[len(p) - 1 + k, c[k]]) for k in range(len(c)) if k not in (0, at))
                row[f"follows_{name}_{tag}"] = math.exp(sure)  # every other token as written
        rows.append(row)
    keys = rows[0].keys()
    return {
        "prompts": len(rows),
        "mean": {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in keys},
        "min": {k: round(min(r[k] for r in rows), 4) for k in keys},
        "max": {k: round(max(r[k] for r in rows), 4) for k in keys},
    }


def demo_judge_info(model_dir: str | Path) -> dict[str, Any] | None:
    """The demo judge's ``demo-judge.json`` if ``model_dir`` is a demo judge, else None."""
    path = Path(model_dir) / INFO_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())
