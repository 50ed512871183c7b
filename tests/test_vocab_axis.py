"""The comparison's report along the vocabulary axis (experiments/research/vocab_axis.py), on
records made up so that every statement's answer is known."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "experiments" / "research"))
import vocab_axis  # noqa: E402

SIZES = {"v1k": 1000, "v4k": 4000, "v16k": 16000}
CFG = {"vocabularies": {v: {} for v in SIZES},
       "strategies": {"full": {"name": "full"}, "hs": {"name": "hs"}, "adaptive": {"name": "adaptive"}},
       "budgets": {"words": {"words": 1000, "seconds_cap": 5.0}, "time": {"seconds": 2.0}}}


def heldout(vocab, budget, strategy):
    """Full best under equal words; HS best under equal time (a flip at every V); adaptive
    0.01 behind the full softmax under equal words."""
    base = {"v1k": 6.0, "v4k": 7.0, "v16k": 8.0}[vocab]
    offset = {("words", "full"): 0.0, ("words", "hs"): 0.2, ("words", "adaptive"): 0.01,
              ("time", "full"): 0.3, ("time", "hs"): 0.0, ("time", "adaptive"): 0.1}[budget, strategy]
    return base + offset


def records():
    out = []
    for v, n in SIZES.items():
        for s, spec in CFG["strategies"].items():
            flops = {"full": 6.0 * n * 100, "hs": 600.0 * np.log2(n), "adaptive": 1.5 * n * 100}[s]
            out.append({"kind": "cost", "vocab": v, "strategy": s, "vocab_size": n,
                        "flops_per_pair": flops, "bytes_per_pair": 4.0 * n, "conditional": s == "adaptive"})
            out.append({"kind": "calibration", "vocab": v, "strategy": s,
                        "pairs_per_s": 1e9 / flops})
            for b in CFG["budgets"]:
                for seed, noise in enumerate((-0.002, 0.0, 0.002)):
                    out.append({"kind": "final", "vocab": v, "budget": b, "strategy": s, "seed": seed,
                                "vocab_size": n, "unigram": 9.0, "heldout": heldout(v, b, s) + noise,
                                "analogy": 0.1, "words": 1000 if (s, v) != ("full", "v16k") else 400,
                                "capped": b == "words" and (s, v) == ("full", "v16k")})
    return out


def test_a_sweep_whose_best_rate_is_at_its_edge_is_flagged():
    sweeps = [{"kind": "sweep", "vocab": "v1k", "budget": "words", "strategy": s, "learning_rate": lr,
               "heldout": h} for s, curve in (("full", {0.01: 7.0, 0.02: 6.5, 0.04: 6.9}),
                                              ("hs", {0.01: 7.0, 0.02: 6.9, 0.04: 6.5}))
              for lr, h in curve.items()]
    text = "\n".join(vocab_axis.report(CFG, records() + sweeps))
    assert "edge of the range swept for hs," in text and "for full" not in text


def test_exponents_are_fitted_on_a_log_log_scale():
    assert vocab_axis.fit_exponent([1e3, 4e3, 16e3], [2e3, 8e3, 32e3]) == pytest.approx(1.0)
    assert vocab_axis.fit_exponent([1e3, 4e3], [5.0, 5.0]) == pytest.approx(0.0)
    assert np.isnan(vocab_axis.fit_exponent([1e3], [1.0]))


def test_the_report_states_bests_gaps_flips_costs_and_the_literature():
    text = "\n".join(vocab_axis.report(CFG, records()))
    assert "Best held-out objective, budget `words`: `v1k`: **full**" in text
    assert "Best held-out objective, budget `time`: `v1k`: **hs**" in text
    # The flip: separated under both budgets, in opposite orders.
    assert "full < hs under `words`, hs < full under `time`" in text
    # Gaps to the full softmax, by V, with the sign.
    assert "hs +0.200 → +0.200 → +0.200" in text and "adaptive +0.010 → +0.010 → +0.010" in text
    # The capped equal-words cell is marked, and how far the full softmax got is said.
    assert "400 words*" in text and "`v16k` 400 words (cut by its cap)" in text
    # Cost: XLA's flops per pair, the fitted exponents beside the claims.
    assert "full 1.00 (claimed O(V·D))" in text and "adaptive 1.00 (claimed" in text
    hs_exp = vocab_axis.fit_exponent(list(SIZES.values()), [600 * np.log2(n) for n in SIZES.values()])
    assert f"hs {hs_exp:.2f} (claimed O(log V · D))" in text
    assert "adaptive†" in text  # counted with its costliest branch
    assert "Chen, Grangier & Auli 2016" in text and "800k-word finding cannot be tested" in text
    assert "the best strategy does not change with V" in text
    assert "Grave et al. 2017" in text and "gap +0.010 nats" in text and "0.25× the flops per pair" in text


def test_one_vocabulary_has_no_axis_section():
    cfg = {**CFG, "vocabularies": {"v1k": {}}}
    assert vocab_axis.report(cfg, [r for r in records() if r["vocab"] == "v1k"]) == []


def test_the_four_plots_are_written(tmp_path):
    vocab_axis.plot(CFG, records(), tmp_path)
    for png in ("heldout_vs_vocab.png", "gap_vs_vocab.png", "cost_vs_vocab.png", "analogy_vs_vocab.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
