"""The comparison's yardstick: each model scored by its own conditional, on a corpus whose true
conditional is known, and the experiment's splits free of held-out leaks."""

import math
import runpy
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from sgns_jax.data.corpus import encode_corpus
from sgns_jax.evaluation.heldout import HeldoutObjective, heldout_pairs, unigram_objective
from sgns_jax.losses import make_output_layer
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import train

ROOT = Path(__file__).parent.parent
V = 20


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    """A Markov chain over 20 words with a skewed unigram (so log q matters) and its exact
    skip-gram conditional for window 1: p(centre x | neighbour w) = ½ T[w, x] + ½ π_x T[x, w] / π_w."""
    rng = np.random.default_rng(0)
    zipf = 1.0 / np.arange(1, V + 1)
    zipf /= zipf.sum()
    trans = 0.6 * zipf[None, :] + 0.4 * rng.dirichlet(np.full(V, 0.3), size=V)
    cum = np.cumsum(trans, axis=1)
    u = rng.random(120_000)
    states = np.zeros(u.size, np.int64)
    for i in range(1, u.size):
        states[i] = min(np.searchsorted(cum[states[i - 1]], u[i]), V - 1)
    words = [f"w{s}" for s in states]
    path = tmp_path_factory.mktemp("markov") / "markov.txt"
    path.write_text("\n".join(" ".join(words[i:i + 100]) for i in range(0, len(words), 100)) + "\n")
    corpus = encode_corpus(path, min_count=1)
    train_split, test = corpus.split_heldout(0.1)
    pairs = heldout_pairs(test, window=1, sample=0, max_pairs=20000)
    evals, evecs = np.linalg.eig(trans.T)
    pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
    pi /= pi.sum()
    cond = 0.5 * trans + 0.5 * (pi[None, :] * trans.T) / pi[:, None]
    state = np.array([int(w[1:]) for w in corpus.vocab.words])
    entropy = float(-np.mean(np.log(cond[state[pairs["input"]], state[pairs["output"]]])))
    return train_split, pairs, entropy


def _train(train_split, loss):
    cfg = TrainConfig().replace(data={"corpus": "<in memory>", "window": 1, "sample": 0},
                                model={"dim": V}, loss=loss,
                                optim={"learning_rate": 0.025, "batch_size": 256},
                                run={"epochs": 3, "quiet": True})
    return train(cfg, train_split).params


@pytest.mark.slow  # two training runs
def test_ns_is_scored_by_its_implied_conditional_and_matches_nce(markov):
    """Trained on a chain with a known conditional (entropy H), NS scored by softmax(u·h +
    log q) reaches H, as NCE does, and is far below ln V and the unigram baseline; scored as
    raw softmax(u·h) it is no better than the unigram. Mutant caught: NS scored as raw
    softmax(u·h) (NegativeSampling.conditional_log_bias returning None)."""
    train_split, pairs, entropy = markov
    counts = train_split.vocab.counts
    ns = _train(train_split, {"name": "ns", "negative_mode": "pair"})
    nce = _train(train_split, {"name": "nce"})
    ns_layer = make_output_layer("ns", counts)
    ns_implied = HeldoutObjective(ns_layer, pairs)(ns)
    ns_raw = HeldoutObjective(ns_layer, pairs, raw=True)(ns)
    nce_score = HeldoutObjective(make_output_layer("nce", counts), pairs)(nce)
    unigram = unigram_objective(pairs, counts, 0.0)
    assert abs(ns_implied - entropy) < 0.03, (ns_implied, entropy)
    assert abs(ns_implied - nce_score) < 0.03, (ns_implied, nce_score)
    assert ns_implied < math.log(V) - 0.25 and ns_implied < unigram - 0.05
    assert ns_raw > ns_implied + 0.05, (ns_raw, ns_implied)


def test_heldout_objective_is_the_biased_log_softmax():
    """The scorer against an explicit numpy log-softmax with the per-word bias."""
    rng = np.random.default_rng(1)
    params = {"w_in": rng.normal(size=(V, 4)), "w_out": rng.normal(size=(V, 4))}
    pairs = {"input": rng.integers(0, V, 37).astype(np.int32),
             "output": rng.integers(0, V, 37).astype(np.int32), "mask": np.ones(37, np.float32)}
    counts = rng.integers(1, 1000, V)
    bias = np.asarray(make_output_layer("ns", counts).conditional_log_bias())
    np.testing.assert_allclose(bias, np.log(counts ** 0.75 / np.sum(counts ** 0.75)), rtol=1e-5)
    for name in ("nce", "sampled"):
        assert make_output_layer(name, counts).conditional_log_bias() is None
    for name in ("full", "hs"):
        assert make_output_layer(name, counts).normalised
    logits = params["w_in"][pairs["input"]] @ params["w_out"].T + bias
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    ref = -np.mean(logp[np.arange(37), pairs["output"]])
    params32 = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    got = HeldoutObjective(make_output_layer("ns", counts), pairs, batch=8)(params32)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    raw = logits - bias
    ref_raw = -np.mean((raw - np.logaddexp.reduce(raw, axis=1, keepdims=True))[np.arange(37), pairs["output"]])
    got_raw = HeldoutObjective(make_output_layer("ns", counts), pairs, raw=True, batch=8)(params32)
    np.testing.assert_allclose(got_raw, ref_raw, rtol=1e-5)


def test_window_hs_is_scored_as_pair_hs():
    """Skip-gram HS trained over windows (its default) scores held-out pairs along their own
    paths: the same objective as the pairs layout's layer on the same parameters."""
    rng = np.random.default_rng(2)
    counts = rng.integers(1, 1000, V)
    pairs = {"input": rng.integers(0, V, 37).astype(np.int32),
             "output": rng.integers(0, V, 37).astype(np.int32), "mask": np.ones(37, np.float32)}
    params = {"w_in": jnp.asarray(rng.normal(size=(V, 4)), jnp.float32),
              "w_out": jnp.asarray(rng.normal(size=(V - 1, 4)), jnp.float32)}
    window, pair = make_output_layer("hs", counts), make_output_layer("hs", counts, hs_paths="pair")
    assert window.layout == "windows"
    np.testing.assert_allclose(HeldoutObjective(window, pairs)(params), HeldoutObjective(pair, pairs)(params),
                               rtol=1e-6)


def test_experiment_vocabulary_comes_from_the_training_split_only(tmp_path):
    """The comparison counts its vocabulary, noise and tree on the training split: a word that
    occurs only in held-out sentences is out of vocabulary, and every count is a training
    count. Mutant caught: the vocabulary built before the split (the old experiment)."""
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(list("abcdefgh"), size=30)) for _ in range(400)]
    # Stored sentences 19, 39, ... are the test split (every 20th); 18, 37, ... of the rest
    # validation. Put a word only there.
    for i in range(19, 400, 20):
        lines[i] += " testonly" * 5
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n")
    cl = runpy.run_path(str(ROOT / "experiments" / "research" / "compare_losses.py"))
    cfg = cl["load_config"](None, True)
    cfg.update(corpus=str(path), max_tokens=None, heldout_pairs=500)
    data = cl["prepare"](cfg, {"min_count": 1})
    vocab = data["train"].vocab
    assert "testonly" not in vocab
    np.testing.assert_array_equal(vocab.counts, np.bincount(data["train"].ids, minlength=len(vocab)))
    assert math.isfinite(data["unigram"]["test"]) and data["pairs"]["test"]["input"].size > 0
