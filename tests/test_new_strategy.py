"""The seams a new strategy plugs into, shown with one defined here and nowhere in the package:
an output layer with leaves of its own (a per-word bias [V] read by rows, a scale [1] read
whole), options with a tuple, registered from this file. It trains, checkpoints, resumes bit
for bit, writes its leaves and parses its options from flags and config files, without any
package file naming it."""

import os
import signal
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgns_jax.cli import build_parser
from sgns_jax.errors import ConfigError
from sgns_jax.losses import registry
from sgns_jax.losses.base import Lookup, OutputTableLayer, ParamSpec, log_sigmoid
from sgns_jax.train import loop as loop_mod
from sgns_jax.train.build import build_layer
from sgns_jax.cli.train import config_from_args
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import TrainingInterrupted, train
from sgns_jax.engine.step import param_specs


@dataclass(frozen=True, eq=False)
class BiasedPairs(OutputTableLayer):
    """Logistic loss of u_c·h·s + b_c against K uniform noise words: w_out [V, D], a bias per
    word b_out [V] (rows, 1-D), and a scale s [1] read whole."""

    negatives: int = 2
    vocab_size: int = 1

    def param_specs(self, vocab_size, dim):
        return {**super().param_specs(vocab_size, dim), "b_out": ParamSpec((vocab_size,)),
                "scale": ParamSpec((1,), "uniform", 1.0, row_indexed=False)}

    def sample_noise(self, key, rows):
        return jax.random.randint(key, (rows, self.negatives), 0, self.vocab_size)

    def lookups(self, batch, noise):
        ids = jnp.concatenate([batch["output"][:, None], noise], 1)
        return {"input": self.input_lookup(batch), "out": Lookup("w_out", ids),
                "bias": Lookup("b_out", ids), "scale": Lookup("scale", None)}

    def example_losses(self, rows, lookups, batch):
        logits = jnp.einsum("bkd,bd->bk", rows["out"], rows["input"]) * rows["scale"][0] + rows["bias"]
        return -(log_sigmoid(logits[:, 0]) + log_sigmoid(-logits[:, 1:]).sum(-1)), batch["mask"]


@dataclass(frozen=True)
class BiasedPairsOptions(registry.LossOptions):
    name: str = "biased_test"
    negative: int = registry.option(2, "K uniform noise words")
    groups: tuple[int, ...] = registry.option((3, 7), "a tuple-valued option (unused)")

    summary: ClassVar[str] = "a strategy defined in a test"

    def build(self, counts, cbow):
        return BiasedPairs(negatives=self.negative, vocab_size=len(counts))


@pytest.fixture(autouse=True)
def registered():
    registry.register(BiasedPairsOptions)
    yield
    registry.unregister("biased_test")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    p = np.arange(1, 31, dtype=float) ** -1.0
    lines = [" ".join(rng.choice(words, size=rng.integers(5, 30), p=p / p.sum())) for _ in range(150)]
    path = tmp_path_factory.mktemp("c") / "tiny.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def config(corpus_file, **run):
    return TrainConfig().replace(
        data={"corpus": str(corpus_file), "min_count": 1, "cache_dir": "", "sample": 1e-2},
        model={"dim": 8}, loss={"name": "biased_test", "groups": (2, 5)},
        optim={"batch_size": 32, "steps_per_chunk": 4},
        run={"epochs": 3, "quiet": True, "parallelism": "single", **run})


def test_it_trains_sparse_equal_to_dense_and_writes_its_leaves(corpus_file, tmp_path):
    cfg = config(corpus_file, out=str(tmp_path / "v.txt"))
    sparse = train(cfg)
    dense = train(cfg.replace(optim={"update": "dense"}, run={"out": None}))
    assert set(sparse.params) == {"w_in", "w_out", "b_out", "scale"}
    assert sparse.params["b_out"].shape == (30,) and sparse.params["scale"].shape == (1,)
    for k in sparse.params:
        np.testing.assert_allclose(sparse.params[k], dense.params[k], rtol=1e-4, atol=1e-6)
    assert np.abs(sparse.params["b_out"]).max() > 0
    with np.load(tmp_path / "v.npz") as z:
        assert {"w_out", "b_out", "scale"} <= set(z.files) and "w_in" not in z.files
        np.testing.assert_array_equal(z["b_out"], sparse.params["b_out"])
    assert sparse.config.loss.groups == (2, 5)


def test_it_checkpoints_and_resumes_bit_for_bit(corpus_file, tmp_path, monkeypatch):
    cfg = config(corpus_file, checkpoint_dir=str(tmp_path / "ckpt"))
    reference = train(cfg.replace(run={"checkpoint_dir": str(tmp_path / "ref")}))
    real = loop_mod.Prefetcher
    delivered = []

    class Interrupting(real):
        def __next__(self):
            item = super().__next__()
            delivered.append(1)
            if len(delivered) == 5:
                os.kill(os.getpid(), signal.SIGINT)
            return item

    monkeypatch.setattr(loop_mod, "Prefetcher", Interrupting)
    with pytest.raises(TrainingInterrupted, match="checkpoint saved"):
        train(cfg)
    monkeypatch.setattr(loop_mod, "Prefetcher", real)
    resumed = train(cfg.replace(run={"resume": True}))
    assert 0 < resumed.resumed_words < resumed.words
    for k in reference.params:
        assert np.array_equal(resumed.params[k], reference.params[k]), k


def test_its_options_come_from_flags_and_config_files(corpus_file, tmp_path):
    parser = build_parser()
    args = parser.parse_args(["train", str(corpus_file), "--loss", "biased_test", "--groups", "4,9",
                              "--negative", "3"])
    cfg = config_from_args(args)
    assert cfg.loss.groups == (4, 9) and cfg.loss.negative == 3
    args = parser.parse_args(["train", str(corpus_file), "--loss", "biased_test",
                              "--set", "loss.groups=1,2,3"])
    assert config_from_args(args).loss.groups == (1, 2, 3)
    (tmp_path / "c.toml").write_text('[loss]\nname = "biased_test"\ngroups = [6, 8]\n')
    assert TrainConfig.load(tmp_path / "c.toml").loss.groups == (6, 8)
    (tmp_path / "bad.toml").write_text('[loss]\nname = "biased_test"\ngroups = [6, "x"]\n')
    with pytest.raises(ConfigError, match="loss.groups must be a list of integers, got"):
        TrainConfig.load(tmp_path / "bad.toml")
    with pytest.raises(SystemExit):  # argparse's one-line usage error
        parser.parse_args(["train", str(corpus_file), "--groups", "4,x"])
    # An option of another strategy is refused with the strategy's own list.
    args = parser.parse_args(["train", str(corpus_file), "--loss", "biased_test", "--hs-paths", "pair"])
    with pytest.raises(ConfigError, match="for loss biased_test: hs_paths"):
        config_from_args(args)
    specs = param_specs(build_layer(config(corpus_file), np.arange(30, 0, -1)), 30, 8)
    assert not specs["scale"].row_indexed and specs["b_out"].row_indexed
