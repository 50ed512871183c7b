"""Batches made on the device (``data/device_batches.py``): the same statistics as the host
pipeline — blocks, keep rates, sentence cuts, window sizes, pairs per token — and training with
them: determinism, bit-for-bit resume, lowering for GPU and TPU."""

import functools
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgns_jax.config import TrainConfig
from sgns_jax.data.batches import BatchSpec, epoch_examples, sentence_of_kept
from sgns_jax.data.corpus import encode_corpus
from sgns_jax.data.device_batches import (batch_root_key, block_bounds, block_examples, block_key,
                                          encode_block, epoch_token_blocks, kept_tokens,
                                          strided_batch, window_slots)
from sgns_jax.data.pairs import keep_probabilities, window_mask
from sgns_jax.errors import ConfigError
from sgns_jax.train.loop import TrainingInterrupted, train


def zipf_corpus(tmp_path, lines, vocab=200, seed=0, name="z.txt"):
    """Lines of the given lengths drawn from a Zipf vocabulary (from a numpy stream other than
    the host batcher's: ``default_rng([0, 0])`` is ``default_rng(0)``, and a corpus drawn from
    the stream that then subsamples it kept 9% fewer words than the formula says)."""
    rng = np.random.default_rng([seed, 12345])
    p = np.arange(1, vocab + 1, dtype=float) ** -1.0
    words = np.array([f"w{i}" for i in range(vocab)])
    text = "\n".join(" ".join(words[rng.choice(vocab, size=n, p=p / p.sum())]) for n in lines)
    path = tmp_path / name
    path.write_text(text + "\n")
    return encode_corpus(path, min_count=1, cache_dir=None, max_sentence_length=250)


@functools.partial(jax.jit, static_argnames=("window", "sentence_words", "layout"))
def jitted_examples(tokens, valid, key, keep_p, **static):
    return block_examples(tokens, valid, key, keep_p, **static)


def device_epoch(corpus, spec, epoch=0, seed=0, layout="pairs"):
    """Every block's examples (host numpy), positions made corpus-absolute."""
    keep_p = jnp.asarray(keep_probabilities(corpus.vocab.counts, spec.sample), jnp.float32)
    root = batch_root_key(seed)
    out = []
    for arrays, _ in epoch_token_blocks(corpus, spec.block_tokens, epoch):
        key = block_key(root, epoch, int(arrays["index"]))
        ex, count = jitted_examples(arrays["tokens"], arrays["valid"], key, keep_p,
                                    window=spec.window, sentence_words=spec.sentence_words,
                                    layout=layout)
        count = int(count)
        ex = {k: np.asarray(v)[:count] for k, v in ex.items()}
        ex["pos"] = ex["pos"] + int(arrays["words_base"]) - epoch * len(corpus)
        out.append(ex)
    return {k: np.concatenate([x[k] for x in out]) for k in out[0]}


def test_blocks_partition_the_corpus_and_carry_the_lines_in_the_sign_bit(tmp_path):
    """Blocks cover every token once, end where a line starts (inside a line longer than the
    block, at one of its stored pieces), and decode to the ids with the line starts marked."""
    c = zipf_corpus(tmp_path, [30, 400, 2000, 5, 700, 90])
    n_block = 512
    bounds = block_bounds(c, n_block)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(c)
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))
    lines, pieces = set(c.line_starts.tolist()), set(c.sentence_starts.tolist())
    for a, b in bounds:
        assert 0 < b - a <= n_block
        line_cuts = [s for s in lines if a < s <= a + n_block]
        if b != len(c):
            assert b == max(line_cuts) if line_cuts else b in pieces
        tokens = encode_block(c, a, b, n_block)
        starts = tokens[:b - a] < 0
        np.testing.assert_array_equal(np.where(starts, -tokens[:b - a] - 1, tokens[:b - a]), c.ids[a:b])
        expected = {0} | {s - a for s in lines if a <= s < b}
        assert set(np.flatnonzero(starts).tolist()) == expected
        assert not tokens[b - a:].any()
    # The 2000-token line is cut inside, at pieces; the block before a line start ends there.
    assert any(b in pieces and b not in lines for _, b in bounds[:-1])


def test_window_slots_equal_the_host_pipeline_given_the_same_draws():
    """Given the same kept tokens and windows, the device's sentence cuts and window slots are
    the host's (batches.sentence_of_kept + pairs.window_mask), slot for slot."""
    rng = np.random.default_rng(3)
    m, window, sentence_words = 3000, 5, 37
    line = np.cumsum(rng.random(m) < 0.01).astype(np.int32)
    ids = rng.integers(0, 50, m).astype(np.int32)
    reduced = rng.integers(1, window + 1, m).astype(np.int32)
    count = 2600  # the rest is padding
    context, mask = jax.jit(functools.partial(window_slots, window=window, sentence_words=sentence_words))(
        ids, line, jnp.int32(count), reduced)
    sent = sentence_of_kept(line[:count], sentence_words)
    expected = window_mask(sent, reduced[:count], window)
    np.testing.assert_array_equal(np.asarray(mask)[:count], expected)
    assert not np.asarray(mask)[count:].any()
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    rows, slots = np.nonzero(expected)
    np.testing.assert_array_equal(np.asarray(context)[rows, slots], ids[rows + offsets[slots]])


def test_keep_rates_match_the_formula():
    """Each word is kept with word2vec's probability: chi-square of kept counts per word over
    many blocks (df = words with enough draws). Mutant caught: the comparison reversed."""
    v = 40
    counts = (np.arange(v, 0, -1) ** 3).astype(np.int64)
    keep_p = keep_probabilities(counts, 1e-3)
    assert keep_p.min() < 0.2 and keep_p.max() == 1
    rng = np.random.default_rng(0)
    tokens = rng.choice(v, size=4096, p=counts / counts.sum()).astype(np.int32)
    tokens[0] = -tokens[0] - 1
    ids = np.where(tokens < 0, -tokens - 1, tokens)
    f = jax.jit(kept_tokens)
    kept = np.zeros(v)
    for k in range(20):
        out = f(tokens, jnp.int32(4000), jax.random.key(k), jnp.asarray(keep_p, jnp.float32))
        kept += np.bincount(np.asarray(out["ids"])[:int(out["count"])], minlength=v)
        pos = np.asarray(out["pos"])[:int(out["count"])]
        assert np.all(np.diff(pos) > 0) and pos.max() < 4000  # in order, never the padding
    seen = np.bincount(ids[:4000], minlength=v) * 20
    p, e = keep_p, seen * keep_p
    used = (e > 5) & (p < 1)
    chi2 = np.sum((kept[used] - e[used]) ** 2 / (e[used] * (1 - p[used])))
    from scipy.stats import chi2 as chi2_dist

    assert chi2_dist.sf(chi2, used.sum()) > 1e-3, (chi2, used.sum())
    np.testing.assert_array_equal(kept[p == 1], seen[p == 1])  # kept for sure


def test_windows_are_uniform_on_1_to_window_and_never_cross_a_line(tmp_path):
    """With nothing subsampled, an interior centre sees b ~ U{1..window} words on each side
    (chi-square, 4 df), the same b on both; no window crosses a line."""
    c = zipf_corpus(tmp_path, [600] * 20, vocab=10, seed=1)
    window = 5
    spec = BatchSpec(layout="windows", window=window, sample=0, block_tokens=1500)
    ex = device_epoch(c, spec, layout="windows")
    assert ex["pos"].size == len(c)  # every centre has a context
    line = c.line_ids(ex["pos"])
    rank = ex["pos"] - c.line_starts[line]
    interior = (rank >= window) & (rank < 600 - window)
    mask = ex["mask"].astype(bool)
    left, right = mask[interior, :window].sum(1), mask[interior, window:].sum(1)
    np.testing.assert_array_equal(left, right)
    observed = np.bincount(left, minlength=window + 1)
    assert observed[0] == 0
    e = interior.sum() / window
    assert np.sum((observed[1:] - e) ** 2 / e) < 18.5, observed
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    rows, slots = np.nonzero(mask)
    assert np.all(c.line_ids(ex["pos"][rows] + offsets[slots]) == line[rows])


def test_sentences_are_cut_at_kept_words_after_subsampling(tmp_path):
    """A line's kept words in runs of sentence_words (here 100); no sentence joins two lines."""
    c = zipf_corpus(tmp_path, [2600, 900, 1700], vocab=8, seed=5)
    spec = BatchSpec(layout="windows", window=1, sample=0.05, sentence_words=100,
                     block_tokens=1 << 14)
    ex = device_epoch(c, spec, layout="windows")
    pos, mask = ex["pos"], ex["mask"].astype(bool)
    assert 0.3 < pos.size / len(c) < 0.9
    starts = np.flatnonzero(~mask[:, 0])
    ends = np.append(starts[1:], pos.size)
    line = c.line_ids(pos)
    for s, e in zip(starts, ends):
        assert np.all(line[s:e] == line[s])
        last_of_line = e == pos.size or line[e] != line[s]
        assert e - s == 100 or (last_of_line and e - s <= 100), (s, e)


def test_pairs_per_token_and_their_distribution_match_the_host_pipeline(tmp_path):
    """Over an epoch of the same corpus: pairs per corpus token within 1.5% of the host's, and
    the number of contexts per centre distributed alike (chi-square on the 2 × 10 table), the
    blocks cut long lines included."""
    from scipy.stats import chi2_contingency

    c = zipf_corpus(tmp_path, list(np.random.default_rng(2).integers(5, 3000, 60)), vocab=300)
    spec = BatchSpec(layout="pairs", window=5, sample=1e-3, block_tokens=4096)
    device, host = [], []
    for seed in range(3):
        device.append(device_epoch(c, spec, seed=seed))
        host.append(np.concatenate([b["pos"] for b in epoch_examples(c, BatchSpec(
            layout="pairs", window=5, sample=1e-3, seed=seed), 0)]))
    d_pairs = np.mean([x["pos"].size for x in device])
    h_pairs = np.mean([x.size for x in host])
    assert abs(d_pairs / h_pairs - 1) < 0.015, (d_pairs, h_pairs)
    per_centre = lambda pos: np.bincount(np.unique(pos, return_counts=True)[1], minlength=11)[1:11]
    table = np.array([sum(per_centre(x["pos"]) for x in device), sum(per_centre(x) for x in host)])
    table = table[:, table.sum(0) > 0]
    assert chi2_contingency(table)[1] > 1e-3, table


@pytest.mark.parametrize("layout", ["pairs", "windows"])
def test_strided_steps_cover_every_example_once(layout):
    count, batch = 1003, 64
    steps = -(-count // batch)
    rows = np.arange(2000, dtype=np.int32)
    examples = ({"input": rows, "output": rows, "pos": rows} if layout == "pairs" else
                {"centre": rows, "context": np.stack([rows, rows], 1),
                 "mask": np.ones((2000, 2), np.float32), "pos": rows})
    seen = []
    for t in range(steps):
        b, pos = strided_batch(examples, jnp.int32(count), jnp.int32(t), jnp.int32(steps), batch)
        name = "input" if layout == "pairs" else "centre"
        real = np.asarray(b["mask"] if layout == "pairs" else b["mask"][:, 0]) > 0
        seen.extend(np.asarray(b[name])[real].tolist())
        assert int(pos) == t and not np.asarray(b[name])[~real].any()
        assert np.array_equal(np.asarray(b[name])[real], np.arange(t, count, steps))
    assert sorted(seen) == list(range(count))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    p = np.arange(1, 41, dtype=float) ** -1.0
    lines = [" ".join(rng.choice(words, size=rng.integers(5, 60), p=p / p.sum())) for _ in range(300)]
    path = tmp_path_factory.mktemp("c") / "tiny.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def device_config(corpus_file, **sections):
    cfg = TrainConfig().replace(
        data={"corpus": str(corpus_file), "min_count": 1, "cache_dir": "", "sample": 1e-2,
              "pipeline": "device"},
        model={"dim": 8}, optim={"batch_size": 32},
        run={"epochs": 2, "quiet": True, "parallelism": "single"})
    return cfg.replace(**sections) if sections else cfg


def test_device_batches_train_deterministically_and_resume_bit_for_bit(corpus_file, tmp_path, monkeypatch):
    """Same seed, same vectors; a run interrupted by SIGINT in its second epoch and resumed is
    the uninterrupted run bit for bit (blocks are a pure function of seed, epoch and index);
    the loss falls as the host pipeline's does."""
    import sgns_jax.data.device_batches as db

    monkeypatch.setattr(BatchSpec, "__init__", _small_blocks(BatchSpec.__init__))
    cfg = device_config(corpus_file, run={"epochs": 3, "quiet": True,
                                          "checkpoint_dir": str(tmp_path / "ckpt")})
    reference = train(cfg.replace(run={"checkpoint_dir": str(tmp_path / "ref")}))
    again = train(cfg.replace(run={"checkpoint_dir": str(tmp_path / "again")}))
    assert all(np.array_equal(again.params[k], reference.params[k]) for k in reference.params)
    assert reference.examples is None  # counted on the device, not reported as 0
    assert reference.epoch_losses[-1] < reference.epoch_losses[0]
    host = train(cfg.replace(data={"pipeline": "host"}, run={"checkpoint_dir": None}))
    assert abs(reference.epoch_losses[-1] - host.epoch_losses[-1]) < 0.1 * host.epoch_losses[-1]
    other = train(cfg.replace(run={"seed": 1, "checkpoint_dir": None}))
    assert not np.array_equal(other.params["w_in"], reference.params["w_in"])

    chunks = []

    def interrupt(event):  # a real SIGINT after the 4th block, as Ctrl-C would send
        chunks.append(event.words)
        if len(chunks) == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="checkpoint saved"):
        train(cfg, callback=interrupt)
    resumed = train(cfg.replace(run={"resume": True}))
    assert 0 < resumed.resumed_words < resumed.words
    assert all(np.array_equal(resumed.params[k], reference.params[k]) for k in reference.params)
    assert db.BATCH_KEY_STREAM  # the batch keys branch off the seed apart from the step keys


def _small_blocks(init):
    """BatchSpec.__init__ with 1,000-token blocks (a test corpus then has several blocks)."""
    def wrapped(self, *args, **kwargs):
        kwargs.setdefault("block_tokens", 1000)
        init(self, *args, **kwargs)
    return wrapped


@pytest.mark.parametrize("parallelism", ["data", "vocab", "workers"])
def test_other_modes_refuse_device_batches_in_one_line(corpus_file, parallelism):
    with pytest.raises(ConfigError, match="device pipeline runs with parallelism single"):
        device_config(corpus_file, run={"parallelism": parallelism})


def test_the_default_mode_for_device_batches_is_one_device(corpus_file):
    from sgns_jax.engine.runners import choose

    cfg = device_config(corpus_file, run={"parallelism": None})
    assert choose(cfg, "cpu", 2, 2, 1, 1000) == ("single", 1)


@pytest.mark.parametrize("name, kw", [("ns", {"negative_mode": "pair"}), ("ns", {"negative_mode": "window"}),
                                      ("hs", {}), ("full", {})])
def test_device_batches_lower_for_gpu_and_tpu(name, kw):
    """The block's subsampling, windows and pairs lower with the steps: no callback or custom
    call, static shapes, the tables donated."""
    from sgns_jax.engine.lowering import export_chunk, inspect_module

    counts = np.arange(300, 0, -1) * 10
    cfg = TrainConfig().replace(loss={"name": name, **kw}, model={"dim": 16},
                                data={"pipeline": "device"}, optim={"batch_size": 8},
                                run={"parallelism": "single", "devices": 1})
    module = inspect_module(export_chunk(cfg, counts))
    assert not module.custom_calls and not module.dynamic_shapes, module
    assert set(module.donated_params) == set(module.params)


def test_a_checkpoint_from_before_the_pipeline_setting_resumes_on_the_host_pipeline(tmp_path):
    """Checkpoints written before ``data.pipeline`` existed made their batches on the host: they
    resume with the host pipeline and are refused, naming the setting, with the device's."""
    from sgns_jax.errors import CheckpointError
    from sgns_jax.train.checkpoint import check_resumable

    corpus = {"vocab_sha256": "x", "vocab_words": 1, "tokens": 1}
    config = TrainConfig().to_dict()
    old = {section: dict(fields) for section, fields in config.items()}
    del old["data"]["pipeline"]
    check_resumable(tmp_path, {"config": old, "corpus": corpus}, {"config": config, "corpus": corpus})
    device = TrainConfig().replace(data={"pipeline": "device"}).to_dict()
    with pytest.raises(CheckpointError, match="data.pipeline 'host' \\(this run: 'device'\\)"):
        check_resumable(tmp_path, {"config": old, "corpus": corpus}, {"config": device, "corpus": corpus})
