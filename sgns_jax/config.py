"""The training configuration: one frozen dataclass tree (data, model, loss, optim, run).

Defaults follow word2vec: dim 100, window 5, negative 5, ns_exponent 0.75, sample 1e-3,
min_count 5, learning rate 0.025 for skip-gram and 0.05 for CBOW (word2vec.c's ``-alpha``
defaults) decayed linearly to lr·1e-4 over all training words, 5 epochs — except that
negative sampling shares each window's negatives (``window`` mode, the fastest at equal
quality; ``negative_mode="pair"`` is word2vec's) and the input vectors start in gensim's
range, twice word2vec.c's (``ModelConfig.init_scale``). Built from CLI flags (generated from
these fields, ``cli/train.py``) or a JSON/TOML file with the same nested keys; saved beside
every output as JSON, with every default resolved (:func:`resolve`).

Each field's ``metadata`` holds its help text, and optionally ``flags`` (the CLI spellings)
and ``choices``; help and choices may be zero-argument callables, read when the CLI is built
(the parallelism modes come from the runner registry).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax

from sgns_jax.data.batches import PIPELINES
from sgns_jax.errors import ConfigError
from sgns_jax.typecheck import check_type
from sgns_jax.losses import LossOptions, check_options, loss_options, replace_options

OPTIMIZERS = ("sgd", "adagrad", "adam")
SCHEDULES = ("linear", "constant", "cosine")
UPDATE_RULES = ("sparse", "dense")


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class DataConfig:
    corpus: str = _f("", "text file (.gz/.bz2 too) or a directory of them", flags=())
    min_count: int = _f(5, "drop words seen fewer times")
    max_vocab: int | None = _f(None, "keep exactly the N most frequent words")
    max_final_vocab: int | None = _f(None, "gensim's: raise min-count until at most N words remain")
    lowercase: bool = _f(False, "lowercase the text")
    window: int = _f(5, "maximum context distance; each centre draws its own 1..window")
    sample: float = _f(1e-3, "subsampling threshold t (0 disables)")
    pipeline: str = _f("host", "where the batches are made: host (numpy, a thread) or device "
                               "(the ids shipped, subsampling, windows and pairs on the device; "
                               "parallelism single)", choices=PIPELINES)
    cache_dir: str | None = _f(None, "where encoded corpora are cached (default "
                                     "$SGNS_JAX_CACHE or ~/.cache/sgns_jax; '' disables)")


@dataclass(frozen=True)
class ModelConfig:
    dim: int = _f(100, "vector dimension D")
    cbow: bool = _f(False, "CBOW instead of skip-gram")
    # 1.0 is gensim 4's range; word2vec.c uses 0.5, which scored 0.74 analogy points below
    # gensim's range over 4 seeds (docs/ablation_pair_gap.md).
    init_scale: float = _f(1.0, "input vectors start uniform in ±init_scale/dim (gensim: 1, "
                                "word2vec.c: 0.5)")


# The [loss] section is the chosen strategy's options class (losses/registry.py): its name
# and the options that strategy has, defined in the strategy's own module.
LossConfig = LossOptions


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = _f("sgd", "sgd (word2vec), or row-wise lazy adagrad / adam", choices=OPTIMIZERS)
    learning_rate: float | None = _f(None, "initial learning rate (default: 0.025 skip-gram, "
                                           "0.05 CBOW)", flags=("--alpha", "--lr"))
    min_learning_rate_ratio: float = _f(1e-4, "final lr = initial × this",
                                        flags=("--min-alpha-ratio",))
    schedule: str = _f("linear", "learning rate over the words read", choices=SCHEDULES)
    update: str = _f("sparse", "sparse: touched rows only; dense: whole tables (reference)",
                     choices=UPDATE_RULES)
    batch_size: int | None = _f(None, "rows (pairs or centres) per step (default: the loss's)")
    steps_per_chunk: int | None = _f(None, "steps fused per jitted call (default: "
                                           "max(32, 8192 / batch))")


@dataclass(frozen=True)
class RunConfig:
    epochs: int = _f(5, "passes over the corpus", flags=("--epochs", "--iter"))
    seed: int = _f(0, "seed of the batches, noise and initialisation")
    out: str | None = _f(None, "vectors file (word2vec text; --binary for binary)")
    binary: bool = _f(False, "write binary word2vec vectors")
    checkpoint_dir: str | None = _f(None, "save checkpoints here (and resume from them)")
    checkpoint_minutes: float = _f(10.0, "minutes between checkpoints")
    resume: bool = _f(False, "continue from the checkpoint in --checkpoint-dir")
    metrics: str | None = _f(None, "append JSONL metrics here")
    quiet: bool = _f(False, "no progress bar or log lines")
    verbose: bool = _f(False, "also print the whole config")
    max_seconds: float | None = _f(None, "training-time budget; stop after the chunk that ends it")
    max_words: int | None = _f(None, "word budget: the schedule spans min(epochs × words, this)")
    # The modes and their help come from the runner registry (engine/runners.py).
    parallelism: str | None = _f(None, lambda: "how the chunks run (default: the runners' policy "
                                               "for this machine): " + _runners().modes_help(),
                                 choices=lambda: list(_runners().RUNNERS))
    devices: int | None = _f(None, "devices, or worker streams, the parallelism uses (default: "
                                   "the mode's own: all devices, or one stream per core, at most 4)")
    merge_every: int = _f(2, "worker streams: chunks each stream trains between merges (fewer: "
                             "less stale updates, more merges; docs/architecture.md)")
    coordinator: str | None = _f(None, "host:port of process 0, to join a jax.distributed run")
    num_processes: int = _f(1, "processes of a jax.distributed run")
    process_id: int = _f(0, "this process's index in a jax.distributed run")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=loss_options)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config is a table of sections ({', '.join(SECTIONS)}), got "
                              f"{type(d).__name__}")
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        kwargs = {}
        for name, sub_cls in SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"config section [{name}] must be a table of keys")
            if name == "loss":  # the strategy's own options class
                kwargs[name] = loss_options(**values)
                continue
            bad = set(values) - {g.name for g in dataclasses.fields(sub_cls)}
            if bad:
                raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(bad))}")
            kwargs[name] = sub_cls(**values)
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
        new = {name: replace_options(self.loss, vals) if name == "loss" else
               dataclasses.replace(getattr(self, name), **vals) for name, vals in sections.items()}
        return dataclasses.replace(self, **new)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
            "run": RunConfig}


def learning_rate(cfg: TrainConfig) -> float:
    """The initial learning rate: as configured, or word2vec.c's default for the model."""
    if cfg.optim.learning_rate is not None:
        return cfg.optim.learning_rate
    return 0.05 if cfg.model.cbow else 0.025


def default_batch_size(cfg: TrainConfig, backend: str = "cpu") -> int:
    """Rows per step when not given: pairs (pairs layout) or centres (windows layout), inside
    the loss's stable range (its options class says which: ``LossOptions.batch_size``).

    The CPU's defaults are small so that a step's gathered rows stay in cache (64 windows:
    README, Performance); a GPU or TPU wants wide steps to fill its cores, so there each loss
    takes its accelerator batch: the largest batch inside the range where summed
    per-pair updates stay stable, whose quality the CPU can measure since it does not depend
    on the device (``docs/bench_accelerator_batches.json``).
    """
    return cfg.loss.batch_size(cfg.model.cbow, backend)


def default_steps_per_chunk(cfg: TrainConfig, batch_size: int) -> int:
    """Steps fused per jitted call when not given: at least 32, and at least 8,192 rows (so small
    batches still make chunks long enough to hide dispatch and the worker merges)."""
    return cfg.optim.steps_per_chunk or max(32, 8192 // batch_size)


def resolve(cfg: TrainConfig, specs: dict) -> TrainConfig:
    """The run's config with every default filled in, in one step (what is saved beside the
    outputs and in checkpoints, and all that building reads): the loss options' model-
    dependent defaults, the learning rate, the parallelism and devices for this machine (the
    runners' default policy, from the parameter tree ``specs``), and the batch
    size (it depends on the backend the mode runs on) and steps per chunk."""
    from sgns_jax.engine import runners

    parallelism, devices = runners.resolve_mode(cfg, specs)
    backend = "cpu" if runners.runner(parallelism).cpu_only else jax.default_backend()
    loss = cfg.loss.resolve(cfg.model.cbow)
    batch_size = cfg.optim.batch_size or loss.batch_size(cfg.model.cbow, backend)
    return cfg.replace(loss=dataclasses.asdict(loss),
                       optim={"learning_rate": learning_rate(cfg), "batch_size": batch_size,
                              "steps_per_chunk": default_steps_per_chunk(cfg, batch_size)},
                       run={"parallelism": parallelism, "devices": devices})


def check_types(cfg: TrainConfig) -> None:
    """Every field holds its annotated type (``sgns_jax.typecheck``; the loss section's
    options check themselves, ``LossOptions``)."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            check_type(f"{section}.{f.name}", getattr(getattr(cfg, section), f.name), hints[f.name])


def validate(cfg: TrainConfig) -> None:
    check_types(cfg)
    d, m, o, r = cfg.data, cfg.model, cfg.optim, cfg.run
    checks = [
        (d.min_count >= 1, f"min_count must be >= 1, got {d.min_count}"),
        (d.max_vocab is None or d.max_vocab >= 1, f"max_vocab must be >= 1, got {d.max_vocab}"),
        (d.max_final_vocab is None or d.max_final_vocab >= 1,
         f"max_final_vocab must be >= 1, got {d.max_final_vocab}"),
        (d.window >= 1, f"window must be >= 1, got {d.window}"),
        (d.sample >= 0, f"sample must be >= 0, got {d.sample}"),
        (d.pipeline in PIPELINES, f"pipeline must be host or device, got {d.pipeline!r}"),
        (m.dim >= 1, f"dim must be >= 1, got {m.dim}"),
        (m.init_scale > 0, f"init_scale must be > 0, got {m.init_scale}"),
        (o.optimizer in OPTIMIZERS, f"unknown optimizer {o.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"),
        (o.learning_rate is None or o.learning_rate > 0,
         f"learning_rate must be > 0, got {o.learning_rate}"),
        (0 <= o.min_learning_rate_ratio <= 1, "min_learning_rate_ratio must be in [0, 1]"),
        (o.schedule in SCHEDULES, f"unknown schedule {o.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
        (o.update in UPDATE_RULES, f"unknown update rule {o.update!r}; choose sparse or dense"),
        (o.batch_size is None or o.batch_size >= 1, f"batch_size must be >= 1, got {o.batch_size}"),
        (o.steps_per_chunk is None or o.steps_per_chunk >= 1,
         f"steps_per_chunk must be >= 1, got {o.steps_per_chunk}"),
        (r.epochs >= 1, f"epochs must be >= 1, got {r.epochs}"),
        (r.checkpoint_minutes > 0, "checkpoint_minutes must be > 0"),
        (r.max_words is None or r.max_words >= 1, f"max_words must be >= 1, got {r.max_words}"),
        (r.devices is None or r.devices >= 1, f"devices must be >= 1, got {r.devices}"),
        (r.merge_every >= 1, f"merge_every must be >= 1, got {r.merge_every}"),
        (0 <= r.process_id < max(r.num_processes, 1), "process_id must be in [0, num_processes)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_options(cfg.loss, m.cbow)
    # Each parallelism mode's own constraints live with its runner (engine/runners.py).
    if r.parallelism is not None:
        mode = _runners().runner(r.parallelism)
        mode.check(cfg)
        mode.check_pipeline(cfg)


def _runners():
    from sgns_jax.engine import runners  # imported late: runners import the step, the step the losses

    return runners
