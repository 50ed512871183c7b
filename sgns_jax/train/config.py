"""The training configuration: one frozen dataclass tree (data, model, loss, optim, run).

Defaults follow word2vec: dim 100, window 5, negative 5, ns_exponent 0.75, sample 1e-3,
min_count 5, learning rate 0.025 for skip-gram and 0.05 for CBOW (word2vec.c's ``-alpha``
defaults) decayed linearly to lr·1e-4 over all training words, 5 epochs — except that
negative sampling shares each window's negatives (``window`` mode, the fastest at equal
quality; ``negative_mode="pair"`` is word2vec's) and the input vectors start in gensim's
range, twice word2vec.c's (``ModelConfig.init_scale``). Built from CLI flags or a JSON/TOML
file with the same nested keys; saved beside every output as JSON."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgns_jax.errors import ConfigError
from sgns_jax.losses import LOSSES, NEGATIVE_MODES

OPTIMIZERS = ("sgd", "adagrad", "adam")
SCHEDULES = ("linear", "constant", "cosine")
UPDATE_PATHS = ("sparse", "dense")


@dataclass(frozen=True)
class DataConfig:
    corpus: str = ""
    min_count: int = 5
    max_vocab: int | None = None        # keep exactly the N most frequent words
    max_final_vocab: int | None = None  # gensim's: raise min_count until at most N words remain
    lowercase: bool = False
    window: int = 5
    sample: float = 1e-3
    cache_dir: str | None = None  # None: $SGNS_JAX_CACHE or ~/.cache/sgns_jax; "" disables


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 100
    cbow: bool = False
    # w_in ~ U(−init_scale/D, init_scale/D). 1.0 is gensim 4's range; word2vec.c uses 0.5, which
    # scored 0.74 analogy points below gensim's range over 4 seeds (docs/ablation_pair_gap.md).
    init_scale: float = 1.0


@dataclass(frozen=True)
class LossConfig:
    name: str = "ns"
    negative: int = 5
    # None: "window" for skip-gram (the fastest mode within gensim's quality in
    # experiments/bench_vs_gensim.py, and stable at higher learning rates; README,
    # Performance), "pair" for CBOW (word2vec's; window is skip-gram only)
    negative_mode: str | None = None
    shared_samples: int = 64
    ns_exponent: float = 0.75
    softmax_chunk: int = 32768


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"
    learning_rate: float | None = None  # None: 0.025 skip-gram, 0.05 CBOW (word2vec.c)
    min_learning_rate_ratio: float = 1e-4
    schedule: str = "linear"
    update: str = "sparse"
    batch_size: int | None = None   # None: the loss's stable default (see default_batch_size)
    steps_per_chunk: int | None = None  # None: max(32, 8192 // batch_size)


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 5
    seed: int = 0
    out: str | None = None
    binary: bool = False
    checkpoint_dir: str | None = None
    checkpoint_minutes: float = 10.0
    resume: bool = False
    metrics: str | None = None
    quiet: bool = False
    max_seconds: float | None = None    # training-time budget; stop after the chunk that ends it
    max_words: int | None = None        # word budget: the lr schedule spans min(epochs·N, this)
                                        # words and training stops once they are read
    devices: int | None = None          # data-parallel devices; None: all (1 on the CPU)
    workers: int = 1                    # Hogwild-style streams, one per device (train/workers.py)
    shard_vocab: bool = False           # split the tables' rows over the devices instead
    coordinator: str | None = None      # host:port of process 0, to join a jax.distributed run
    num_processes: int = 1
    process_id: int = 0


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(d) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            sub_cls = _SECTION[f.name]
            values = d.get(f.name, {})
            names = {g.name for g in dataclasses.fields(sub_cls)}
            bad = set(values) - names
            if bad:
                raise ConfigError(f"unknown key(s) in [{f.name}]: {', '.join(sorted(bad))}")
            if not isinstance(values, dict):
                raise ConfigError(f"config section [{f.name}] must be a table of keys")
            kwargs[f.name] = sub_cls(**values)
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        try:
            d = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config {path} is not valid {path.suffix[1:] or 'JSON'}: {e}") from None
        return cls.from_dict(d)

    def replace(self, **sections: dict[str, Any]) -> "TrainConfig":
        """A copy with some fields of some sections changed: ``cfg.replace(run={"epochs": 1})``."""
        new = {name: dataclasses.replace(getattr(self, name), **vals) for name, vals in sections.items()}
        return dataclasses.replace(self, **new)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


_SECTION = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
            "run": RunConfig}


def negative_mode(cfg: TrainConfig) -> str:
    """The NS sampling mode: as configured, or window (skip-gram) / pair (CBOW) by default."""
    if cfg.loss.negative_mode is not None:
        return cfg.loss.negative_mode
    return "pair" if cfg.model.cbow else "window"


def learning_rate(cfg: TrainConfig) -> float:
    """The initial learning rate: as configured, or word2vec.c's default for the model."""
    if cfg.optim.learning_rate is not None:
        return cfg.optim.learning_rate
    return 0.05 if cfg.model.cbow else 0.025


def default_batch_size(cfg: TrainConfig) -> int:
    """Rows per step when not given: pairs (pairs layout) or centres (windows layout).

    Chosen inside the stable ranges measured on this kind of machine: summed per-pair updates
    diverge when a batch stacks too many updates on the same rows (hierarchical softmax's root
    is on every path, so it needs the smallest batches).
    """
    name, mode = cfg.loss.name, negative_mode(cfg)
    if name == "hs":
        return 256
    if name == "full":
        return 256
    if cfg.model.cbow:
        return 256
    if name == "ns" and mode == "window":
        # Small enough for a step's gathered rows to stay in cache: 64 centres (~380 pairs)
        # trained 1.3× the words/s of 256 with the same scores (README, Performance).
        return 64
    return 1024


def default_steps_per_chunk(cfg: TrainConfig, batch_size: int) -> int:
    """Steps fused per jitted call when not given: at least 32, and at least 8,192 rows (so small
    batches still make chunks long enough to hide dispatch and the worker merges)."""
    return cfg.optim.steps_per_chunk or max(32, 8192 // batch_size)


def validate(cfg: TrainConfig) -> None:
    d, m, l, o, r = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.run
    checks = [
        (d.min_count >= 1, f"min_count must be >= 1, got {d.min_count}"),
        (d.max_vocab is None or d.max_vocab >= 1, f"max_vocab must be >= 1, got {d.max_vocab}"),
        (d.max_final_vocab is None or d.max_final_vocab >= 1,
         f"max_final_vocab must be >= 1, got {d.max_final_vocab}"),
        (d.window >= 1, f"window must be >= 1, got {d.window}"),
        (d.sample >= 0, f"sample must be >= 0, got {d.sample}"),
        (m.dim >= 1, f"dim must be >= 1, got {m.dim}"),
        (m.init_scale > 0, f"init_scale must be > 0, got {m.init_scale}"),
        (l.name in LOSSES, f"unknown loss {l.name!r}; choose one of {', '.join(LOSSES)}"),
        (l.negative >= 1, f"negative must be >= 1, got {l.negative}"),
        (l.negative_mode is None or l.negative_mode in NEGATIVE_MODES,
         f"unknown negative mode {l.negative_mode!r}; choose one of {', '.join(NEGATIVE_MODES)}"),
        (not (m.cbow and l.name == "ns" and l.negative_mode == "window"),
         "negative mode 'window' is for skip-gram; CBOW takes 'pair' or 'batch'"),
        (l.shared_samples >= 1, f"shared_samples must be >= 1, got {l.shared_samples}"),
        (l.ns_exponent >= 0, f"ns_exponent must be >= 0, got {l.ns_exponent}"),
        (l.softmax_chunk >= 1, f"softmax_chunk must be >= 1, got {l.softmax_chunk}"),
        (o.optimizer in OPTIMIZERS, f"unknown optimizer {o.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"),
        (o.learning_rate is None or o.learning_rate > 0,
         f"learning_rate must be > 0, got {o.learning_rate}"),
        (0 <= o.min_learning_rate_ratio <= 1, "min_learning_rate_ratio must be in [0, 1]"),
        (o.schedule in SCHEDULES, f"unknown schedule {o.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
        (o.update in UPDATE_PATHS, f"unknown update path {o.update!r}; choose sparse or dense"),
        (o.batch_size is None or o.batch_size >= 1, f"batch_size must be >= 1, got {o.batch_size}"),
        (o.steps_per_chunk is None or o.steps_per_chunk >= 1,
         f"steps_per_chunk must be >= 1, got {o.steps_per_chunk}"),
        (r.epochs >= 1, f"epochs must be >= 1, got {r.epochs}"),
        (r.checkpoint_minutes > 0, "checkpoint_minutes must be > 0"),
        (r.max_words is None or r.max_words >= 1, f"max_words must be >= 1, got {r.max_words}"),
        (r.devices is None or r.devices >= 1, f"devices must be >= 1, got {r.devices}"),
        (not r.shard_vocab or (o.optimizer == "sgd" and o.update == "sparse" and l.name != "full"),
         "shard_vocab needs optimizer sgd, the sparse update and a sampled or tree loss (not full)"),
        (not (r.shard_vocab and r.coordinator), "shard_vocab runs in one process"),
        (r.workers >= 1, f"workers must be >= 1, got {r.workers}"),
        (r.workers == 1 or o.optimizer == "sgd", "workers > 1 needs optimizer sgd"),
        (r.workers == 1 or not (r.shard_vocab or r.coordinator or (r.devices or 1) > 1),
         "workers > 1 runs one stream per device in one process; it does not combine with "
         "devices > 1, shard_vocab or a coordinator"),
        (0 <= r.process_id < max(r.num_processes, 1), "process_id must be in [0, num_processes)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
