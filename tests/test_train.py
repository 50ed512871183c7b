"""Training engine: fused steps, update paths, determinism, checkpoints, CLI."""

import functools
import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgns_jax.data.corpus import encode_corpus
from sgns_jax.errors import ConfigError, SgnsError, TrainingDiverged
from sgns_jax.losses import registered_variants
from sgns_jax.evaluation.formats import load_word2vec
from sgns_jax.train import loop as loop_mod
from sgns_jax.engine import runners as runners_mod
from sgns_jax.train.checkpoint import load_checkpoint
from sgns_jax.config import TrainConfig
from sgns_jax.train.build import batch_spec, build_layer, make_schedule
from sgns_jax.train.loop import TrainingInterrupted, train
from sgns_jax.engine.step import (chunk_steps, init_params, init_state, param_specs, train_step,
                                 uniform_rows)
from sgns_jax.engine.updates import make_update_rule

def jitted_train_step(state, batch, key, lr, **static):
    """train_step compiled whole, as the runners run it (un-jitted, JAX dispatches and compiles
    each operation on its own: many times slower)."""
    return jax.jit(functools.partial(train_step, **static))(state, batch, key, lr)



@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    p = np.arange(1, 31, dtype=float) ** -1.0
    lines = [" ".join(rng.choice(words, size=rng.integers(5, 30), p=p / p.sum())) for _ in range(150)]
    path = tmp_path_factory.mktemp("c") / "tiny.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(corpus_file, **sections):
    base = TrainConfig().replace(
        data={"corpus": str(corpus_file), "min_count": 1, "cache_dir": "", "sample": 1e-2},
        model={"dim": 8},
        optim={"batch_size": 32, "steps_per_chunk": 4},
        run={"epochs": 2, "quiet": True, "parallelism": "single"})
    return base.replace(**sections) if sections else base


def test_no_recompilation_after_first_chunk(corpus_file, monkeypatch):
    made = []
    original = runners_mod.SingleDevice.build.__func__

    def recording(cls, *args, **kwargs):
        made.append(original(cls, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(runners_mod.SingleDevice, "build", classmethod(recording))
    train(tiny_config(corpus_file))
    assert len(made) == 1
    assert made[0].chunk_fn._cache_size() == 1


@pytest.mark.parametrize("loss, kw", list(registered_variants()),
                         ids=[f"{n}-{kw}" for n, kw in registered_variants()])
def test_sparse_equals_dense_for_sgd(corpus_file, loss, kw):
    """Every registered variant: the sparse row update equals jax.grad over the whole tables."""
    cfg = tiny_config(corpus_file, loss={"name": loss, **{k: v for k, v in kw.items() if k != "cbow"}},
                      model={"dim": 8, "cbow": kw.get("cbow", False)},
                      run={"epochs": 1, "quiet": True})
    sparse = train(cfg.replace(optim={"update": "sparse"}))
    dense = train(cfg.replace(optim={"update": "dense"}))
    assert sparse.params.keys() == dense.params.keys()
    for k in sparse.params:
        np.testing.assert_allclose(sparse.params[k], dense.params[k], rtol=1e-4, atol=1e-6)
    specs = param_specs(build_layer(cfg, sparse.vocab.counts), len(sparse.vocab), 8)
    assert all(np.abs(sparse.params[k]).max() > 0 for k, s in specs.items() if s.init == "zeros")  # it did train


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_lazy_sparse_step_equals_dense_step_from_fresh_state(corpus_file, optimizer):
    """One step from a fresh state: untouched rows have zero moments, so the dense optax update
    leaves them unchanged too and the lazy row-wise update must equal the dense one."""
    cfg = tiny_config(corpus_file, optim={"optimizer": optimizer}, loss={"negative_mode": "pair"})
    corpus = encode_corpus(corpus_file, min_count=1)
    layer = build_layer(cfg, corpus.vocab.counts)
    params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
    params["w_out"] = params["w_in"][: params["w_out"].shape[0]] * 3  # nonzero output rows
    batch = {"input": jnp.array([1, 2, 2, 5], jnp.int32), "output": jnp.array([3, 3, 4, 1], jnp.int32),
             "mask": jnp.ones(4)}
    key = jax.random.key(1)
    outs = {}
    for path in ("sparse", "dense"):
        rule = make_update_rule(optimizer, path)
        outs[path], _, _ = jitted_train_step(init_state(params, rule), batch, key, jnp.float32(0.01),
                                      layer=layer, rule=rule)
    for k in ("w_in", "w_out"):
        np.testing.assert_allclose(outs["sparse"].params[k], outs["dense"].params[k], rtol=1e-5, atol=1e-7)
    assert not np.allclose(outs["sparse"].params["w_in"], params["w_in"])


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_lazy_optimizers_learn_a_learnable_problem(tmp_path, optimizer):
    """Two topics whose words never share a line: after training, the NS loss over every
    pair of the corpus (fixed noise) is far below its starting value (w_out = 0: ≈ 6·ln 2)
    and words are closer within a topic than across. Mutants caught: a lazy update that
    drops its writes (loss stays 4.16), state rows scattered to the wrong ids (no separation)."""
    rng = np.random.default_rng(0)
    topics = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    lines = [" ".join(rng.choice(topics[i % 2], size=12)) for i in range(300)]
    path = tmp_path / "topics.txt"
    path.write_text("\n".join(lines) + "\n")
    cfg = tiny_config(path, optim={"optimizer": optimizer, "learning_rate": 0.05},
                      loss={"negative_mode": "pair"}, data={"corpus": str(path), "min_count": 1,
                                                            "cache_dir": "", "sample": 0},
                      run={"epochs": 3, "quiet": True})
    r = train(cfg)
    corpus = encode_corpus(path, min_count=1)
    layer = build_layer(cfg, corpus.vocab.counts)
    from sgns_jax.data.batches import epoch_examples
    (ex,) = epoch_examples(corpus, batch_spec(cfg, layer), 0)
    batch = {k: jnp.asarray(ex[k]) for k in ("input", "output", "mask")}
    key = jax.random.key(0)
    start = float(layer.loss({"w_in": jnp.asarray(r.params["w_in"]),
                              "w_out": jnp.zeros_like(jnp.asarray(r.params["w_out"]))}, batch, key)[0])
    end = float(layer.loss({k: jnp.asarray(v) for k, v in r.params.items()}, batch, key)[0])
    assert 5 * np.log(2) < start <= 6 * np.log(2)  # (negatives equal to the target are skipped)
    assert end < 0.75 * start, (start, end)
    unit = r.params["w_in"] / np.linalg.norm(r.params["w_in"], axis=1, keepdims=True)
    topic = np.array([w[0] for w in corpus.vocab.words])
    cos = unit @ unit.T
    same = topic[:, None] == topic[None, :]
    np.fill_diagonal(same, False)
    assert cos[same].mean() > cos[topic[:, None] != topic[None, :]].mean() + 0.2


def test_same_seed_identical_vectors_other_seed_different(corpus_file):
    a = train(tiny_config(corpus_file))
    b = train(tiny_config(corpus_file))
    c = train(tiny_config(corpus_file, run={"seed": 1, "epochs": 2, "quiet": True}))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["w_in"], c.params["w_in"])


def test_initialisation_follows_gensim_and_word2vec(corpus_file):
    """w_in uniform in ±init_scale/D (gensim 4: ±1/D, the default; word2vec.c: ±0.5/D), output
    tables zero. Mutant caught: word2vec.c's range as the default (the pair-mode gap to gensim,
    docs/ablation_pair_gap.md)."""
    cfg = tiny_config(corpus_file)
    assert cfg.model.init_scale == 1.0
    corpus = encode_corpus(corpus_file, min_count=1)
    for name in ("ns", "hs"):
        layer = build_layer(cfg.replace(loss={"name": name}), corpus.vocab.counts)
        for scale in (1.0, 0.5):
            p = init_params(layer, 30, 50, jax.random.key(0), scale)
            w = np.asarray(p["w_in"]) * 50 / scale
            assert np.abs(w).max() < 1 and np.abs(w).max() > 0.95 and abs(w.mean()) < 0.05
            assert not np.any(p["w_out"]) and p["w_out"].shape[0] == (29 if name == "hs" else 30)


def test_uniform_rows_depends_on_the_row_index_only():
    """Block-filled init: a row's values are its own key's draw whatever the block size and
    table size (the last, clamped block recomputes rows identically); rows differ; uniform.
    Mutants caught: the last block's start left unclamped (XLA clamps the write, so its rows get
    the keys of rows past the table), one key for every row (identical rows)."""
    key = jax.random.key(3)
    whole = np.asarray(uniform_rows(key, 1000, 16, 1.0, 1000))
    for rows, block in ((1000, 64), (1000, 7), (333, 64), (5, 64)):
        np.testing.assert_array_equal(np.asarray(uniform_rows(key, rows, 16, 1.0, block)), whole[:rows])
    expected = jax.random.uniform(jax.random.fold_in(key, 999), (16,), jnp.float32) * 2 - 1
    np.testing.assert_array_equal(whole[999], np.asarray(expected))
    assert len(np.unique(whole[:, 0])) == 1000
    assert whole.min() >= -1 and whole.max() < 1 and abs(whole.mean()) < 0.02
    np.testing.assert_allclose(np.asarray(uniform_rows(key, 1000, 16, 0.25, 64)), whole * 0.25, rtol=1e-6)
    assert np.asarray(uniform_rows(key, 0, 16)).shape == (0, 16)


def test_resume_after_sigint_equals_uninterrupted(corpus_file, tmp_path, monkeypatch):
    cfg = tiny_config(corpus_file, run={"epochs": 3, "quiet": True,
                                        "checkpoint_dir": str(tmp_path / "ckpt")})
    reference = train(cfg.replace(run={"checkpoint_dir": str(tmp_path / "ref")}))

    real_prefetcher = loop_mod.Prefetcher
    delivered = []

    class InterruptingPrefetcher(real_prefetcher):
        """Sends the process a real SIGINT while the 2nd epoch's 2nd chunk is being trained."""

        def __next__(self):
            item = super().__next__()
            delivered.append(1)
            if len(delivered) == 5:
                os.kill(os.getpid(), signal.SIGINT)
            return item

    monkeypatch.setattr(loop_mod, "Prefetcher", InterruptingPrefetcher)
    with pytest.raises(TrainingInterrupted, match="checkpoint saved"):
        train(cfg)
    monkeypatch.setattr(loop_mod, "Prefetcher", real_prefetcher)
    # The checkpoint loads and is mid-run.
    layer = build_layer(cfg, encode_corpus(corpus_file, min_count=1).vocab.counts)
    template = init_state(init_params(layer, 30, 8, jax.random.key(0)), make_update_rule("sgd", "sparse"))
    state, progress, saved_cfg = load_checkpoint(tmp_path / "ckpt", template)
    assert 0 < int(state.step) and saved_cfg["run"]["epochs"] == 3
    resumed = train(cfg.replace(run={"resume": True}))
    assert all(np.array_equal(resumed.params[k], reference.params[k]) for k in reference.params)
    # The rate counts this call's words only; resuming at the very end trains nothing and
    # reports no rate (it printed "2,683,702,000,000,000 corpus words/s" before).
    assert 0 < resumed.resumed_words < resumed.words
    again = train(cfg.replace(run={"resume": True}))
    assert again.resumed_words == again.words and again.words_per_second == 0.0
    # The checkpoint records the chunks' shape; other chunks would retrain or skip data.
    assert saved_cfg["optim"]["batch_size"] == 32 and saved_cfg["optim"]["steps_per_chunk"] == 4
    with pytest.raises(SgnsError, match=r"written with other settings: optim.batch_size 32 \(this run: 16\)"):
        train(cfg.replace(run={"resume": True}, optim={"batch_size": 16}))


def test_checkpoints_written_before_layer_owned_leaves_are_refused(corpus_file, tmp_path):
    """Checkpoints once stored the two tables as top-level ``w_in`` and ``w_out`` and no corpus
    fingerprint: they cannot be checked against the run that resumes them, so they are refused
    with one line, not loaded into the wrong words."""
    from sgns_jax.errors import CheckpointError

    cfg = tiny_config(corpus_file, run={"epochs": 1, "quiet": True, "checkpoint_dir": str(tmp_path / "new")})
    train(cfg)
    with np.load(tmp_path / "new" / "checkpoint.npz") as z:
        assert {"param/w_in", "param/w_out"} <= set(z.files)
        old = {k.removeprefix("param/"): z[k] for k in z.files if k != "meta"}
        meta = json.loads(bytes(z["meta"]).decode())
    old["meta"] = np.frombuffer(json.dumps({k: meta[k] for k in ("progress", "config", "opt_leaves")}).encode(), np.uint8)
    (tmp_path / "old").mkdir()
    np.savez(tmp_path / "old" / "checkpoint.npz", **old)
    layer = build_layer(cfg, encode_corpus(corpus_file, min_count=1).vocab.counts)
    template = init_state(init_params(layer, 30, 8, jax.random.key(0)), make_update_rule("sgd", "sparse"))
    load_checkpoint(tmp_path / "new", template)
    with pytest.raises(CheckpointError, match="written by another version"):
        load_checkpoint(tmp_path / "old", template)


def test_nan_loss_stops_with_a_message(corpus_file):
    cfg = tiny_config(corpus_file, optim={"learning_rate": 1e30, "schedule": "constant"})
    with pytest.raises(TrainingDiverged, match=r"loss became .* in steps \d+"):
        train(cfg)


def test_config_file_roundtrip_and_errors(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file)
    (tmp_path / "c.json").write_text(cfg.to_json())
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    (tmp_path / "c.toml").write_text('[loss]\nname = "hs"\n[run]\nepochs = 3\n')
    t = TrainConfig.load(tmp_path / "c.toml")
    assert t.loss.name == "hs" and t.run.epochs == 3 and t.model.dim == 100
    with pytest.raises(ConfigError, match="window"):
        cfg.replace(data={"window": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"loss": {"nmae": "ns"}})
    with pytest.raises(ConfigError, match="unknown loss"):
        TrainConfig.from_dict({"loss": {"name": "softmaxx"}})
    with pytest.raises(ConfigError, match="'workers' needs optimizer sgd"):
        cfg.replace(optim={"optimizer": "adam"}, run={"parallelism": "workers", "devices": 2})
    with pytest.raises(ConfigError, match="'single' runs on one device"):
        cfg.replace(run={"devices": 2})
    with pytest.raises(ConfigError, match="'vocab' needs optimizer sgd"):
        cfg.replace(optim={"optimizer": "adam"}, run={"parallelism": "vocab"})
    with pytest.raises(ConfigError, match="'window' is for skip-gram"):
        cfg.replace(model={"cbow": True}, loss={"negative_mode": "window"})


def test_workers_without_enough_devices_is_a_clear_error(corpus_file):
    jnp.zeros(1).block_until_ready()  # JAX has started: the CPU device count is fixed
    if len(jax.devices()) >= 2:
        pytest.skip("this process has several devices")
    with pytest.raises(SgnsError, match="2 streams need 2 devices.*device_count=2"):
        train(tiny_config(corpus_file, run={"parallelism": "workers", "devices": 2}))


def test_output_in_missing_directory_fails_before_training(corpus_file, tmp_path):
    with pytest.raises(SgnsError, match="does not exist"):
        train(tiny_config(corpus_file, run={"out": str(tmp_path / "nope" / "v.txt")}))


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "sgns_jax.cli", *args], capture_output=True,
                          text=True, timeout=300, **kwargs)


def test_cli_end_to_end(corpus_file, tmp_path):
    out = tmp_path / "vectors.txt"
    r = run_cli("train", str(corpus_file), "--loss", "ns", "--dim", "10", "--window", "3",
                "--negative", "3", "--epochs", "2", "--min-count", "1", "--cache-dir", "",
                "--batch-size", "64", "--out", str(out), "--metrics", str(tmp_path / "m.jsonl"))
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines()[0] == "30 10"
    words, vectors = load_word2vec(out)
    assert len(words) == 30 and vectors.shape == (30, 10)
    assert json.loads((tmp_path / "vectors.config.json").read_text())["loss"]["negative"] == 3
    with np.load(tmp_path / "vectors.npz") as z:
        assert "w_in" not in z and z["w_out"].shape == (30, 10) and list(z["words"]) == words
    metrics = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    binary = tmp_path / "v.bin"
    r = run_cli("train", str(corpus_file), "--dim", "10", "--epochs", "1", "--min-count", "1",
                "--cache-dir", "", "--binary", "--out", str(binary), "--quiet")
    assert r.returncode == 0, r.stderr
    assert load_word2vec(binary, binary=True)[1].shape == (30, 10)


@pytest.mark.parametrize("binary", [False, True])
def test_outputs_hold_the_whole_state_once(corpus_file, tmp_path, binary):
    """The vectors file is w_in exactly (text's 9 significant digits round-trip float32) and
    the .npz holds the rest, so the state is on disk once. Mutant caught: 6 digits in text."""
    out = tmp_path / ("v.bin" if binary else "v.txt")
    result = train(tiny_config(corpus_file, run={"epochs": 1, "quiet": True, "out": str(out),
                                                 "binary": binary}))
    words, vectors = load_word2vec(out, binary=binary)
    assert words == list(result.vocab.words)
    np.testing.assert_array_equal(vectors, result.params["w_in"])
    with np.load(tmp_path / "v.npz") as z:
        assert sorted(z.files) == ["config", "counts", "w_out", "words"]
        np.testing.assert_array_equal(z["w_out"], result.params["w_out"])
        np.testing.assert_array_equal(z["counts"], result.vocab.counts)


def test_outputs_honour_the_umask(corpus_file, tmp_path):
    """Outputs get the mode a plain open() would give (0666 & ~umask), not mkstemp's 0600, so
    other users of a shared machine can read the vectors. Mutant caught: the fchmod removed."""
    old = os.umask(0o022)
    try:
        train(tiny_config(corpus_file, run={"epochs": 1, "quiet": True, "out": str(tmp_path / "v.txt")}))
    finally:
        os.umask(old)
    for name in ("v.txt", "v.npz", "v.config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_train_help_lists_every_strategy_mode_and_option():
    """``sgns-jax train --help`` is generated from the registries (a '%' in a help text once
    broke it): every strategy, every parallelism mode, every strategy's options."""
    from sgns_jax.engine.runners import RUNNERS
    from sgns_jax.losses import option_fields, specs

    r = run_cli("train", "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert all(name in text for name in specs()) and all(mode in text for mode in RUNNERS)
    assert all(f"--{name.replace('_', '-')}" in text for name in option_fields())


@pytest.mark.parametrize("args, code, message", [
    (["--window", "0"], 2, "window must be >= 1"),
    (["--loss", "bogus"], 2, "invalid choice"),
    (["--epochs", "x"], 2, "invalid int value"),
    (["--out", "/no/such/dir/v.txt"], 2, "output directory does not exist"),
    (["--merge-every", "0"], 2, "merge_every must be >= 1"),
    (["--matmul-dtype", "bfloat16"], 2, "matmul_dtype bfloat16 needs negative_mode batch"),
])
def test_cli_bad_flags(corpus_file, args, code, message):
    r = run_cli("train", str(corpus_file), "--min-count", "1", "--cache-dir", "", *args)
    assert r.returncode == code
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("loss, mode", [("ns", "pair"), ("ns", "window"), ("ns", "batch"), ("hs", "pair")])
def test_sparse_step_makes_no_full_table_copy(loss, mode):
    """One scatter-add per table per step: the compiled chunk holds no copy of a whole table
    (two chained scatters into one donated table make XLA insert one)."""
    import re

    v, d = 3000, 16
    counts = np.arange(v, 0, -1)
    cfg = TrainConfig().replace(loss={"name": loss, **({"negative_mode": mode} if loss == "ns" else {"hs_paths": mode})},
                                model={"dim": d})
    layer = build_layer(cfg, counts)
    rule = make_update_rule("sgd", "sparse")
    fn = jax.jit(chunk_steps(layer, rule, make_schedule(cfg, 10**6)), donate_argnums=(0,))
    state = init_state(init_params(layer, v, d, jax.random.key(0)), rule)
    rng = np.random.default_rng(0)
    t, b = 4, 64
    if layer.layout == "pairs":
        arrays = {"input": rng.integers(0, v, (t, b)), "output": rng.integers(0, v, (t, b)),
                  "mask": np.ones((t, b), np.float32)}
    else:
        arrays = {"centre": rng.integers(0, v, (t, b)), "context": rng.integers(0, v, (t, b, 10)),
                  "mask": np.ones((t, b, 10), np.float32)}
    arrays = {k: x.astype(np.int32) if x.dtype.kind == "i" else x for k, x in arrays.items()}
    arrays["words"] = np.zeros(t, np.float32)
    text = fn.lower(state, arrays, jax.random.key_data(jax.random.key(0))).compile().as_text()
    table_shapes = {f"f32[{s.shape[0]},{d}]" for s in param_specs(layer, v, d).values()}
    copies = [line for line in text.splitlines()
              if re.search(r"= f32\[\d+,\d+\]\{[^}]*\} copy\(", line)
              and any(s in line.split("=")[1][:30] for s in table_shapes)]
    assert not copies, copies[:3]


@pytest.mark.parametrize("update", ["sparse", "dense"])
def test_chunk_equals_its_steps_and_reports_the_first_steps_loss(update):
    """The fused chunk = its steps one by one; the loss it reports is the first step's (the
    other steps skip the loss value, so the reported figure must not include them)."""
    v, d, t, b = 40, 8, 3, 16
    cfg = TrainConfig().replace(model={"dim": d}, loss={"negative_mode": "pair"})
    layer = build_layer(cfg, np.arange(v, 0, -1))
    rule = make_update_rule("sgd", update)
    schedule = make_schedule(cfg, 10**4)
    rng = np.random.default_rng(0)
    arrays = {"input": rng.integers(0, v, (t, b)).astype(np.int32),
              "output": rng.integers(0, v, (t, b)).astype(np.int32),
              "mask": (rng.random((t, b)) < 0.8).astype(np.float32),
              "words": np.array([0.0, 100.0, 200.0], np.float32)}
    params = init_params(layer, v, d, jax.random.key(0))
    params["w_out"] = params["w_out"] + 0.1
    root = jax.random.key(1)

    state = init_state(jax.tree.map(jnp.copy, params), rule)
    reported = []
    for i in range(t):
        batch = {k: jnp.asarray(arrays[k][i]) for k in ("input", "output", "mask")}
        state, loss, count = jitted_train_step(state, batch, jax.random.fold_in(root, state.step),
                                        schedule(arrays["words"][i]), layer=layer, rule=rule)
        reported.append((float(loss), float(count)))
    loss, count = reported[0]
    fn = jax.jit(chunk_steps(layer, rule, schedule), donate_argnums=(0,))
    fused, fused_loss, fused_count = fn(init_state(jax.tree.map(jnp.copy, params), rule),
                                        arrays, jax.random.key_data(root))
    assert float(fused_count) == count == arrays["mask"][0].sum()
    np.testing.assert_allclose(float(fused_loss), float(loss), rtol=1e-6)
    for k in params:
        np.testing.assert_allclose(np.asarray(fused.params[k]), np.asarray(state.params[k]), atol=1e-6)


def _word2vec_cbow_update(syn0, syn1, windows, outputs, alpha):
    """numpy transcription of word2vec.c's CBOW update (TrainModelThread, cbow branch), one
    window at a time: ``outputs[i]`` lists (output row, label) — the centre and its negatives
    for NS, (inner node, 1 − code) along the path for HS. Without the MAX_EXP clipping."""
    syn0, syn1 = syn0.copy(), syn1.copy()
    for (ctx, mask), outs in zip(windows, outputs):
        cols = [c for c, m in zip(ctx, mask) if m]
        neu1 = syn0[cols].mean(0)                      # neu1[c] /= cw
        neu1e = np.zeros_like(neu1)
        for row, label in outs:
            f = neu1 @ syn1[row]
            g = (label - 1 / (1 + np.exp(-f))) * alpha
            neu1e += g * syn1[row]
            syn1[row] += g * neu1
        for c in cols:                                 # every context gets the whole neu1e
            syn0[c] += neu1e
    return syn0, syn1


@pytest.mark.parametrize("loss", ["ns", "hs"])
def test_cbow_step_is_word2vecs_update(loss):
    """CBOW's step equals word2vec.c's update: the averaged input, and the whole error added to
    every context row. Mutant caught: the mean's autodiff gradient (each context row gets 1/|C|
    of neu1e, the bug gensim-level quality exposed)."""
    v, d = 40, 6
    cfg = TrainConfig().replace(model={"dim": d, "cbow": True},
                                loss={"name": loss, **({"negative_mode": "pair", "negative": 3} if loss == "ns" else {})})
    layer = build_layer(cfg, np.arange(v, 0, -1) * 10)
    rule = make_update_rule("sgd", "sparse")
    rng = np.random.default_rng(0)
    params = {"w_in": jnp.asarray(rng.normal(size=(v, d)) * 0.3, jnp.float32),
              "w_out": jnp.asarray(rng.normal(size=layer.param_specs(v, d)["w_out"].shape) * 0.3,
                                   jnp.float32)}
    words = rng.permutation(v)
    centre = words[:3].astype(np.int32)
    context = words[3:15].reshape(3, 4).astype(np.int32)
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1]], np.float32)
    alpha = 0.05
    state = init_state(params, rule)
    outputs = []
    for i in range(3):  # word2vec's order: one window after the other
        batch = {"centre": jnp.asarray(centre[i:i + 1]), "context": jnp.asarray(context[i:i + 1]),
                 "mask": jnp.asarray(mask[i:i + 1])}
        if loss == "ns":
            # A key whose negatives are distinct (word2vec would see a repeated row's update
            # within the window; a batched step sums them — equal to first order only).
            key = next(k for k in (jax.random.key(100 * i + j) for j in range(100))
                       if len(set(np.asarray(layer.sample_noise(k, 1))[0].tolist())) == 3)
            noise = np.asarray(layer.sample_noise(key, 1))[0]
            outputs.append([(centre[i], 1.0)] + [(n, 0.0) for n in noise if n != centre[i]])
        else:
            key = jax.random.key(0)
            tree = layer.tree
            c = centre[i]
            outputs.append([(tree.points[c, j], 1.0 - tree.codes[c, j])
                            for j in range(tree.lengths[c])])
        state, _, _ = jitted_train_step(state, batch, key, jnp.float32(alpha), layer=layer,
                                 rule=rule)
    ref_in, ref_out = _word2vec_cbow_update(np.asarray(params["w_in"], np.float64),
                                            np.asarray(params["w_out"], np.float64),
                                            zip(context, mask), outputs, alpha)
    np.testing.assert_allclose(state.params["w_in"], ref_in, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.params["w_out"], ref_out, rtol=1e-5, atol=1e-6)


def test_learning_rate_decays_linearly_in_words_read(corpus_file):
    """word2vec's schedule: lr = alpha·(1 − words read / (epochs·words)), floored at
    alpha·1e-4, where "words read" counts in-vocabulary corpus words (before subsampling) —
    not steps, pairs or kept words. Mutants caught: decay per step or per pair (the words fed
    to the schedule would not be corpus positions), the floor missing or at the wrong end,
    CBOW's default lr (0.05) or skip-gram's (0.025) changed."""
    from sgns_jax.data.batches import epoch_chunks
    from sgns_jax.train.build import batch_spec, make_schedule

    for cbow, alpha in ((False, 0.025), (True, 0.05)):
        cfg = tiny_config(corpus_file, model={"dim": 8, "cbow": cbow}, run={"epochs": 3, "quiet": True})
        corpus = encode_corpus(corpus_file, min_count=1)
        total = 3 * len(corpus)
        schedule = make_schedule(cfg, total)
        np.testing.assert_allclose(schedule(0), alpha, rtol=1e-6)
        np.testing.assert_allclose(schedule(total / 4), alpha * (1 - 0.25 * (1 - 1e-4)), rtol=1e-5)
        np.testing.assert_allclose(schedule(total), alpha * 1e-4, rtol=1e-4)
        np.testing.assert_allclose(schedule(2 * total), alpha * 1e-4, rtol=1e-4)
    layer = build_layer(cfg, corpus.vocab.counts)
    spec = batch_spec(cfg, layer)
    from sgns_jax.data.batches import epoch_examples
    for epoch in range(3):
        first_pos = np.concatenate([b["pos"] for b in epoch_examples(corpus, spec, epoch)])
        chunks = list(epoch_chunks(corpus, spec, epoch))
        words = np.concatenate([c.arrays["words"] for c in chunks])
        # Each step's schedule position is the corpus position of its first example, which
        # (steps strided through the chunk) is the chunk's t-th example for step t.
        rows = spec.steps_per_chunk * spec.batch_size
        expected = np.concatenate([first_pos[start:start + rows][:spec.steps_per_chunk]
                                   for start in range(0, first_pos.size, rows)])
        steps_with_data = np.concatenate([c.arrays["mask"].reshape(spec.steps_per_chunk, -1).any(1)
                                          for c in chunks])
        np.testing.assert_array_equal(words[steps_with_data], epoch * len(corpus) + expected)
        assert chunks[-1].words_end == (epoch + 1) * len(corpus)


def test_compilation_is_not_training_time(corpus_file, monkeypatch):
    """``TrainResult.seconds`` (the experiments' "train s" and every words/s figure) is
    steady-state time: the training call is compiled before the clock starts. A stand-in chunk
    function takes 1.5 s to compile. Mutant caught: the clock started before the first,
    compiling, call (training seconds would include the 1.5 s)."""
    import time

    class SlowToCompile:
        def __init__(self, fn):
            self.fn, self.compiled = fn, False

        def lower(self, *args):
            outer, lowered = self, self.fn.lower(*args)

            class Lowered:
                def compile(self):
                    time.sleep(1.5)
                    outer.compiled = True
                    return lowered.compile()
            return Lowered()

        def __call__(self, *args):
            if not self.compiled:  # jit would compile on the first call
                time.sleep(1.5)
                self.compiled = True
            return self.fn(*args)

    original = runners_mod.SingleDevice.build.__func__

    def slow(cls, *args, **kwargs):
        runner = original(cls, *args, **kwargs)
        runner.chunk_fn = SlowToCompile(runner.chunk_fn)
        return runner

    monkeypatch.setattr(runners_mod.SingleDevice, "build", classmethod(slow))
    r = train(tiny_config(corpus_file, run={"epochs": 1, "quiet": True, "parallelism": "single"}))
    assert r.compile_seconds >= 1.5
    assert r.seconds < 1.0, r.seconds


def test_cli_keeps_compiled_calls_in_the_cache(corpus_file, tmp_path):
    cache = tmp_path / "cache"
    args = ("train", str(corpus_file), "--dim", "10", "--epochs", "1", "--min-count", "1",
            "--cache-dir", str(cache), "--quiet")
    env = {**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # store every call
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    compiled = set(os.listdir(cache / "xla"))
    assert any(name.startswith("jit_") for name in compiled)
    r = run_cli(*args, env=env)  # the same shapes: every call loaded, nothing new compiled
    assert r.returncode == 0, r.stderr
    assert set(os.listdir(cache / "xla")) == compiled


def test_skipgram_hs_step_is_word2vecs_update():
    """One skip-gram pair's HS step equals word2vec.c's loop, including its rule that a node
    whose logit is beyond ±6 is skipped (no update), not updated with the exact σ:

        for d in path: f = syn0[c]·syn1[p_d]; if |f| >= 6: continue
                       g = (1 − code_d − σ(f))·α; neu1e += g·syn1[p_d]; syn1[p_d] += g·syn0[c]
        syn0[c] += neu1e

    Mutant caught: the exact σ(−x) gradient at saturated nodes."""
    v, d = 12, 5
    cfg = TrainConfig().replace(model={"dim": d}, loss={"name": "hs", "hs_paths": "pair"})
    layer = build_layer(cfg, np.arange(v, 0, -1) * 10)
    tree = layer.tree
    rule = make_update_rule("sgd", "sparse")
    rng = np.random.default_rng(3)
    syn0 = rng.normal(size=(v, d)).astype(np.float32) * 2.0  # large: some nodes saturate
    syn1 = rng.normal(size=(v - 1, d)).astype(np.float32) * 2.0
    context, centre, alpha = 4, v - 1, 0.05  # the deepest leaf: the longest path
    state = init_state({"w_in": jnp.asarray(syn0), "w_out": jnp.asarray(syn1)}, rule)
    batch = {"input": jnp.asarray([context], jnp.int32), "output": jnp.asarray([centre], jnp.int32),
             "mask": jnp.ones(1, jnp.float32)}
    got = jitted_train_step(state, batch, jax.random.key(0), jnp.float32(alpha), layer=layer, rule=rule)[0].params
    neu1e = np.zeros(d)
    skipped = 0
    ref1 = syn1.astype(np.float64).copy()
    for point, code in zip(tree.points[centre, :tree.lengths[centre]], tree.codes[centre, :tree.lengths[centre]]):
        f = syn0[context] @ syn1[point]
        if f <= -6 or f >= 6:
            skipped += 1
            continue
        g = (1 - code - 1 / (1 + np.exp(-f))) * alpha
        neu1e += g * syn1[point]
        ref1[point] += g * syn0[context]
    ref0 = syn0.astype(np.float64).copy()
    ref0[context] += neu1e
    assert 0 < skipped < tree.lengths[centre]  # the case is exercised, and not all of it
    np.testing.assert_allclose(got["w_in"], ref0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["w_out"], ref1, rtol=1e-5, atol=1e-6)


def test_default_parallelism_follows_the_machine_and_the_tables():
    from sgns_jax.engine.runners import DEFAULT_WORKERS_MAX_TABLE_BYTES
    from sgns_jax.engine.runners import choose as default_parallelism

    cfg = TrainConfig()
    small, large = 32 << 20, DEFAULT_WORKERS_MAX_TABLE_BYTES + 1
    assert default_parallelism(cfg, "cpu", 2, 1, 1, small) == ("workers", 2)
    assert default_parallelism(cfg, "cpu", 16, 1, 1, small) == ("workers", 4)  # capped
    assert default_parallelism(cfg, "cpu", 1, 1, 1, small) == ("single", 1)
    assert default_parallelism(cfg, "cpu", 2, 1, 1, large) == ("single", 1)  # merges too costly
    adam = cfg.replace(optim={"optimizer": "adam"})
    assert default_parallelism(adam, "cpu", 2, 1, 1, small) == ("single", 1)  # workers: SGD only
    assert default_parallelism(cfg, "cpu", 2, 1, 1, small, whole_leaves=True) == ("single", 1)
    assert default_parallelism(cfg, "gpu", 2, 8, 1, large) == ("data", None)  # every device
    assert default_parallelism(cfg, "gpu", 2, 1, 1, small) == ("single", 1)
    assert default_parallelism(cfg, "cpu", 2, 4, 2, small) == ("data", None)  # several processes
    chosen = cfg.replace(run={"parallelism": "vocab", "devices": 4})
    assert default_parallelism(chosen, "cpu", 2, 4, 1, large) == ("vocab", 4)


def test_batch_spec_takes_the_backend_and_the_run_records_it(corpus_file, monkeypatch):
    cfg = TrainConfig().replace(data={"corpus": str(corpus_file), "min_count": 1})
    layer = build_layer(cfg, encode_corpus(corpus_file, min_count=1).vocab.counts)
    assert batch_spec(cfg, layer).batch_size == 64  # window negatives on the CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert batch_spec(cfg, layer).batch_size == 512
    # worker streams are CPU devices whatever the host's backend
    assert batch_spec(cfg.replace(run={"parallelism": "workers"}), layer).batch_size == 64
    monkeypatch.undo()
    result = train(tiny_config(corpus_file, optim={"batch_size": None, "steps_per_chunk": None},
                               run={"epochs": 1, "quiet": True, "parallelism": "single"}))
    assert result.config.optim.batch_size == 64 and result.config.optim.steps_per_chunk == 128


def test_default_batch_sizes_follow_the_backend():
    from sgns_jax.config import default_batch_size

    def batch(backend, **loss):
        return default_batch_size(TrainConfig().replace(loss=loss), backend)

    # the CPU's cache-sized steps, and wider steps on a GPU/TPU inside the stable ranges
    assert (batch("cpu"), batch("gpu"), batch("tpu")) == (64, 512, 512)  # window negatives
    assert (batch("cpu", negative_mode="pair"), batch("gpu", negative_mode="pair")) == (1024, 4096)
    assert (batch("cpu", name="hs"), batch("gpu", name="hs")) == (64, 128)
    assert batch("cpu", negative_mode="batch") == batch("gpu", negative_mode="batch") == 1024
    assert batch("cpu", name="full") == batch("gpu", name="full") == 256
    for name, kw in registered_variants():  # every variant: never smaller, splits over 8 devices
        cbow = kw.pop("cbow", False)
        cfg = TrainConfig().replace(loss={"name": name, **kw}, model={"cbow": cbow})
        cpu, gpu = default_batch_size(cfg, "cpu"), default_batch_size(cfg, "gpu")
        assert gpu >= cpu and gpu % 8 == 0, (name, kw, cbow)
