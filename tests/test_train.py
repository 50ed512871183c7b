"""Training engine: fused steps, update paths, determinism, checkpoints, CLI."""

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
from sgns_jax.evaluation.formats import load_word2vec
from sgns_jax.train import loop as loop_mod
from sgns_jax.train.checkpoint import load_checkpoint
from sgns_jax.train.config import TrainConfig
from sgns_jax.train.loop import TrainingInterrupted, build_layer, make_transform, train
from sgns_jax.train.step import init_params, init_state, train_step


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
        run={"epochs": 2, "quiet": True})
    return base.replace(**sections) if sections else base


def test_no_recompilation_after_first_chunk(corpus_file, monkeypatch):
    made = []
    original = loop_mod.make_train_chunk

    def recording(*args, **kwargs):
        fn = original(*args, **kwargs)
        made.append(fn)
        return fn

    monkeypatch.setattr(loop_mod, "make_train_chunk", recording)
    train(tiny_config(corpus_file))
    assert len(made) == 1
    assert made[0]._cache_size() == 1


@pytest.mark.parametrize("loss, mode", [("ns", "pair"), ("ns", "window"), ("ns", "batch"),
                                        ("hs", "pair"), ("full", "pair"), ("nce", "pair"),
                                        ("sampled", "pair")])
def test_sparse_equals_dense_for_sgd(corpus_file, loss, mode):
    cfg = tiny_config(corpus_file, loss={"name": loss, "negative_mode": mode},
                      run={"epochs": 1, "quiet": True})
    sparse = train(cfg.replace(optim={"update": "sparse"}))
    dense = train(cfg.replace(optim={"update": "dense"}))
    for k in ("w_in", "w_out"):
        np.testing.assert_allclose(sparse.params[k], dense.params[k], rtol=1e-4, atol=1e-6)
    assert np.abs(sparse.params["w_out"]).max() > 0  # it did train


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_lazy_sparse_step_equals_dense_step_from_fresh_state(corpus_file, optimizer):
    """One step from a fresh state: untouched rows have zero moments, so the dense optax update
    leaves them unchanged too and the lazy row-wise update must equal the dense one."""
    cfg = tiny_config(corpus_file, optim={"optimizer": optimizer}, loss={"negative_mode": "pair"})
    corpus = encode_corpus(corpus_file, min_count=1)
    layer = build_layer(cfg, corpus.vocab.counts)
    transform, stateless = make_transform(optimizer)
    params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
    params["w_out"] = params["w_in"][: params["w_out"].shape[0]] * 3  # nonzero output rows
    batch = {"input": jnp.array([1, 2, 2, 5], jnp.int32), "output": jnp.array([3, 3, 4, 1], jnp.int32),
             "mask": jnp.ones(4)}
    key = jax.random.key(1)
    outs = {}
    for path in ("sparse", "dense"):
        state = init_state(params, transform, path)
        outs[path], _, _ = train_step(state, batch, key, jnp.float32(0.01), layer=layer,
                                      transform=transform, path=path, stateless=stateless)
    for k in ("w_in", "w_out"):
        np.testing.assert_allclose(outs["sparse"].params[k], outs["dense"].params[k], rtol=1e-5, atol=1e-7)
    assert not np.allclose(outs["sparse"].params["w_in"], params["w_in"])


def test_lazy_adam_trains(corpus_file):
    r = train(tiny_config(corpus_file, optim={"optimizer": "adam"}, run={"epochs": 2, "quiet": True}))
    assert np.isfinite(r.mean_loss) and r.epoch_losses[-1] < r.epoch_losses[0] + 1e-6


def test_same_seed_identical_vectors_other_seed_different(corpus_file):
    a = train(tiny_config(corpus_file))
    b = train(tiny_config(corpus_file))
    c = train(tiny_config(corpus_file, run={"seed": 1, "epochs": 2, "quiet": True}))
    assert np.array_equal(a.params["w_in"], b.params["w_in"])
    assert np.array_equal(a.params["w_out"], b.params["w_out"])
    assert not np.array_equal(a.params["w_in"], c.params["w_in"])


def test_initialisation_follows_word2vec(corpus_file):
    cfg = tiny_config(corpus_file)
    corpus = encode_corpus(corpus_file, min_count=1)
    for name in ("ns", "hs"):
        layer = build_layer(cfg.replace(loss={"name": name}), corpus.vocab.counts)
        p = init_params(layer, 30, 50, jax.random.key(0))
        assert np.abs(p["w_in"]).max() < 0.5 / 50 and np.abs(p["w_in"]).max() > 0.4 / 50
        assert not np.any(p["w_out"]) and p["w_out"].shape[0] == (29 if name == "hs" else 30)


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
    template = init_state(init_params(layer, 30, 8, jax.random.key(0)), make_transform("sgd")[0], "sparse")
    state, progress, saved_cfg = load_checkpoint(tmp_path / "ckpt", template)
    assert 0 < int(state.step) and saved_cfg["run"]["epochs"] == 3
    resumed = train(cfg.replace(run={"resume": True}))
    assert np.array_equal(resumed.params["w_in"], reference.params["w_in"])
    assert np.array_equal(resumed.params["w_out"], reference.params["w_out"])


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
    with pytest.raises(ConfigError, match="workers > 1 needs optimizer sgd"):
        cfg.replace(optim={"optimizer": "adam"}, run={"workers": 2})
    with pytest.raises(ConfigError, match="does not combine"):
        cfg.replace(run={"workers": 2, "devices": 2})


def test_workers_without_enough_devices_is_a_clear_error(corpus_file):
    jnp.zeros(1).block_until_ready()  # JAX has started: the CPU device count is fixed
    if len(jax.devices()) >= 2:
        pytest.skip("this process has several devices")
    with pytest.raises(SgnsError, match="workers=2 needs 2 devices.*device_count=2"):
        train(tiny_config(corpus_file, run={"workers": 2}))


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
        np.testing.assert_array_equal(z["w_in"], vectors)
    metrics = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    binary = tmp_path / "v.bin"
    r = run_cli("train", str(corpus_file), "--dim", "10", "--epochs", "1", "--min-count", "1",
                "--cache-dir", "", "--binary", "--out", str(binary), "--quiet")
    assert r.returncode == 0, r.stderr
    assert load_word2vec(binary, binary=True)[1].shape == (30, 10)


@pytest.mark.parametrize("args, code, message", [
    (["--window", "0"], 2, "window must be >= 1"),
    (["--loss", "bogus"], 2, "invalid choice"),
    (["--epochs", "x"], 2, "invalid int value"),
    (["--out", "/no/such/dir/v.txt"], 2, "output directory does not exist"),
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

    from sgns_jax.train.loop import make_schedule

    v, d = 3000, 16
    counts = np.arange(v, 0, -1)
    cfg = TrainConfig().replace(loss={"name": loss, "negative_mode": mode}, model={"dim": d})
    layer = build_layer(cfg, counts)
    transform, stateless = make_transform("sgd")
    fn = loop_mod.make_train_chunk(layer, transform, make_schedule(cfg, 10**6), stateless=stateless)
    state = init_state(init_params(layer, v, d, jax.random.key(0)), transform, "sparse")
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
    table_shapes = {f"f32[{n},{d}]" for n in layer.table_rows(v).values()}
    copies = [line for line in text.splitlines()
              if re.search(r"= f32\[\d+,\d+\]\{[^}]*\} copy\(", line)
              and any(s in line.split("=")[1][:30] for s in table_shapes)]
    assert not copies, copies[:3]


@pytest.mark.parametrize("update", ["sparse", "dense"])
def test_chunk_equals_its_steps_and_reports_the_first_steps_loss(update):
    """The fused chunk = its steps one by one; the loss it reports is the first step's (the
    other steps skip the loss value, so the reported figure must not include them)."""
    from sgns_jax.train.loop import make_schedule
    from sgns_jax.train.step import make_train_chunk

    v, d, t, b = 40, 8, 3, 16
    cfg = TrainConfig().replace(model={"dim": d}, loss={"negative_mode": "pair"})
    layer = build_layer(cfg, np.arange(v, 0, -1))
    transform, stateless = make_transform("sgd")
    schedule = make_schedule(cfg, 10**4)
    rng = np.random.default_rng(0)
    arrays = {"input": rng.integers(0, v, (t, b)).astype(np.int32),
              "output": rng.integers(0, v, (t, b)).astype(np.int32),
              "mask": (rng.random((t, b)) < 0.8).astype(np.float32),
              "words": np.array([0.0, 100.0, 200.0], np.float32)}
    params = init_params(layer, v, d, jax.random.key(0))
    params["w_out"] = params["w_out"] + 0.1
    root = jax.random.key(1)

    state = init_state(jax.tree.map(jnp.copy, params), transform, update)
    reported = []
    for i in range(t):
        batch = {k: jnp.asarray(arrays[k][i]) for k in ("input", "output", "mask")}
        state, loss, count = train_step(state, batch, jax.random.fold_in(root, state.step),
                                        schedule(arrays["words"][i]), layer=layer,
                                        transform=transform, path=update, stateless=stateless)
        reported.append((float(loss), float(count)))
    loss, count = reported[0]
    fn = make_train_chunk(layer, transform, schedule, path=update, stateless=stateless)
    fused, fused_loss, fused_count = fn(init_state(jax.tree.map(jnp.copy, params), transform, update),
                                        arrays, jax.random.key_data(root))
    assert float(fused_count) == count == arrays["mask"][0].sum()
    np.testing.assert_allclose(float(fused_loss), float(loss), rtol=1e-6)
    for k in params:
        np.testing.assert_allclose(np.asarray(fused.params[k]), np.asarray(state.params[k]), atol=1e-6)
