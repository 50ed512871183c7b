"""``sgns-jax train``: flags (or a config file) → TrainConfig → train()."""

from __future__ import annotations

import argparse
import sys

from sgns_jax.errors import ConfigError

# flag dest → (config section, key). Flags left out keep the config file's (or default) value.
FLAGS = {
    "min_count": ("data", "min_count"), "max_vocab": ("data", "max_vocab"),
    "max_final_vocab": ("data", "max_final_vocab"),
    "lowercase": ("data", "lowercase"), "window": ("data", "window"), "sample": ("data", "sample"),
    "cache_dir": ("data", "cache_dir"),
    "dim": ("model", "dim"), "cbow": ("model", "cbow"), "init_scale": ("model", "init_scale"),
    "loss": ("loss", "name"), "negative": ("loss", "negative"),
    "negative_mode": ("loss", "negative_mode"), "shared_samples": ("loss", "shared_samples"),
    "ns_exponent": ("loss", "ns_exponent"), "softmax_chunk": ("loss", "softmax_chunk"),
    "optimizer": ("optim", "optimizer"), "alpha": ("optim", "learning_rate"),
    "min_alpha_ratio": ("optim", "min_learning_rate_ratio"), "schedule": ("optim", "schedule"),
    "update": ("optim", "update"), "batch_size": ("optim", "batch_size"),
    "steps_per_chunk": ("optim", "steps_per_chunk"),
    "epochs": ("run", "epochs"), "seed": ("run", "seed"), "out": ("run", "out"),
    "binary": ("run", "binary"), "checkpoint_dir": ("run", "checkpoint_dir"),
    "checkpoint_minutes": ("run", "checkpoint_minutes"), "resume": ("run", "resume"),
    "metrics": ("run", "metrics"), "quiet": ("run", "quiet"), "devices": ("run", "devices"),
    "coordinator": ("run", "coordinator"), "num_processes": ("run", "num_processes"),
    "process_id": ("run", "process_id"), "shard_vocab": ("run", "shard_vocab"),
    "workers": ("run", "workers"),
}


def register(sub, add_corpus_flags) -> None:
    S = argparse.SUPPRESS
    p = sub.add_parser("train", help="train word vectors", argument_default=S,
                       description="Train skip-gram (or CBOW) vectors. Defaults follow word2vec, "
                                   "except window-shared negatives (--negative-mode pair is "
                                   "word2vec's).")
    p.add_argument("corpus", nargs="?", help="text file (.gz/.bz2 too) or a directory of them")
    p.add_argument("--config", help="JSON or TOML file with [data] [model] [loss] [optim] [run]")
    g = p.add_argument_group("data")
    g.add_argument("--min-count", type=int)
    g.add_argument("--max-vocab", type=int, help="keep exactly the N most frequent words")
    g.add_argument("--max-final-vocab", type=int,
                   help="gensim's: raise min-count until at most N words remain")
    g.add_argument("--lowercase", action="store_true")
    g.add_argument("--window", type=int)
    g.add_argument("--sample", type=float, help="subsampling threshold t (0 disables)")
    g.add_argument("--cache-dir", help="where encoded corpora are cached ('' disables)")
    g = p.add_argument_group("model and loss")
    g.add_argument("--dim", type=int)
    g.add_argument("--cbow", action="store_true", help="CBOW instead of skip-gram")
    g.add_argument("--init-scale", type=float,
                   help="input vectors start uniform in ±init_scale/dim (default 1: gensim's; "
                        "word2vec.c's is 0.5)")
    g.add_argument("--loss", choices=["full", "hs", "ns", "nce", "sampled"])
    g.add_argument("--negative", type=int, help="K noise words per pair (ns, nce)")
    g.add_argument("--negative-mode", choices=["pair", "window", "batch"],
                   help="how NS draws noise (default: window for skip-gram, pair for CBOW)")
    g.add_argument("--shared-samples", type=int, help="S shared noise words (ns batch mode, sampled)")
    g.add_argument("--ns-exponent", type=float)
    g.add_argument("--softmax-chunk", type=int)
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=["sgd", "adagrad", "adam"])
    g.add_argument("--alpha", "--lr", dest="alpha", type=float, help="initial learning rate (default: 0.025 skip-gram, 0.05 CBOW)")
    g.add_argument("--min-alpha-ratio", type=float, help="final lr = alpha × this")
    g.add_argument("--schedule", choices=["linear", "constant", "cosine"])
    g.add_argument("--update", choices=["sparse", "dense"])
    g.add_argument("--batch-size", type=int)
    g.add_argument("--steps-per-chunk", type=int)
    g = p.add_argument_group("run")
    g.add_argument("--epochs", "--iter", dest="epochs", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--out", help="vectors file (word2vec text; --binary for binary)")
    g.add_argument("--binary", action="store_true")
    g.add_argument("--checkpoint-dir")
    g.add_argument("--checkpoint-minutes", type=float)
    g.add_argument("--resume", action="store_true")
    g.add_argument("--metrics", help="append JSONL metrics here")
    g.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("devices")
    g.add_argument("--workers", type=int,
                   help="Hogwild-style training streams, one per device; on the CPU, one per "
                        "core is fastest (default: 1, the exact sequential updates)")
    g.add_argument("--devices", type=int, help="data-parallel devices (default: all; 1 on the CPU)")
    g.add_argument("--shard-vocab", action="store_true",
                   help="split the tables' rows over the devices (model parallel) instead")
    g.add_argument("--coordinator", help="host:port of process 0 (jax.distributed)")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)
    p.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace):
    from sgns_jax.train.config import TrainConfig

    base = TrainConfig.load(args.config) if getattr(args, "config", None) else None
    d = base.to_dict() if base else {s: {} for s in ("data", "model", "loss", "optim", "run")}
    for dest, (section, key) in FLAGS.items():
        if hasattr(args, dest):
            d[section][key] = getattr(args, dest)
    if getattr(args, "corpus", None):
        d["data"]["corpus"] = args.corpus
    if not d["data"].get("corpus"):
        raise ConfigError("no corpus given (a CORPUS argument or data.corpus in --config)")
    return TrainConfig.from_dict(d)


def run_train(args: argparse.Namespace) -> None:
    from sgns_jax.train.loop import output_paths, train

    cfg = config_from_args(args)
    result = train(cfg)
    trained = result.words - result.resumed_words
    if trained <= 0:
        summary = f"nothing left to train: the checkpoint is at the end ({result.words:,} words)"
    else:
        summary = (f"trained {trained:,} words in {result.seconds:.1f} s "
                   f"({result.words_per_second:,.0f} corpus words/s), mean loss {result.mean_loss:.4f}")
    print(summary, file=sys.stderr if cfg.run.quiet else sys.stdout)
    if cfg.run.out and not cfg.run.quiet:
        paths = output_paths(cfg.run.out)
        print(f"wrote {paths['vectors']}, {paths['state']}, {paths['config']}")
