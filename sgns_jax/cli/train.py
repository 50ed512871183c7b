"""``sgns-jax train``: flags (or a config file) → TrainConfig → train().

The flags are generated from the config dataclasses (``config.py``): one per field,
spelled ``--field-name`` unless the field's metadata gives ``flags``, with its help text and
choices. The ``[loss]`` flags come from the registered strategies' options classes
(``losses/registry.py``): ``--loss`` chooses one, and each option flag belongs to the strategies
that declare it (a flag the chosen strategy does not have is an error). Tuple-valued options
take comma-separated values (``--cutoffs 2000,10000``). ``--set section.field=value`` sets any
field, and flags left out keep the config file's (or default) value.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from sgns_jax.errors import ConfigError

def _choices(section: str, f: dataclasses.Field) -> Any:
    if section == "loss" and f.name == "name":
        from sgns_jax.losses import specs
        return list(specs())
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


def _help(f: dataclasses.Field) -> str | None:
    help = f.metadata.get("help")
    return help() if callable(help) else help


def _value_type(f: dataclasses.Field, owner: type) -> Any:
    """The field's type without its None: a scalar type, or ``tuple[item, ...]``."""
    hint = typing.get_type_hints(owner)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and typing.get_origin(hint) is not tuple else hint


def _fields():
    """(section, owner class, field, help) of every config field; the loss section's are the
    ``name`` and every registered strategy's options."""
    from sgns_jax.losses import LossOptions, option_fields, specs
    from sgns_jax.config import SECTIONS

    for section, cls in SECTIONS.items():
        if section == "loss":
            name = next(f for f in dataclasses.fields(LossOptions) if f.name == "name")
            strategies = "; ".join(f"{n}: {c.summary}" for n, c in specs().items())
            yield section, LossOptions, name, f"{name.metadata.get('help')} ({strategies})"
            for f, owner, users in option_fields().values():
                yield section, owner, f, f"{f.metadata.get('help', '')} ({', '.join(users)})"
            continue
        for f in dataclasses.fields(cls):
            yield section, cls, f, _help(f)


def register(sub, add_corpus_flags) -> None:
    S = argparse.SUPPRESS
    p = sub.add_parser("train", help="train word vectors", argument_default=S,
                       description="Train skip-gram (or CBOW) vectors. Defaults follow word2vec, "
                                   "except window-shared negatives (--negative-mode pair is "
                                   "word2vec's) and gensim's initial range.")
    p.add_argument("corpus", nargs="?", help="text file (.gz/.bz2 too) or a directory of them")
    p.add_argument("--config", help="JSON or TOML file with [data] [model] [loss] [optim] [run]")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", dest="overrides",
                   help="set any config field, e.g. --set optim.learning_rate=0.035 (repeatable)")
    from sgns_jax.engine.runners import Workers

    p.add_argument("--workers", type=int, metavar="N",
                   help=f"shorthand for --parallelism {Workers.name} --devices N (N = 1: one stream)")
    groups = {}
    for section, cls, f, help in _fields():
        help = help and help.replace("%", "%%")  # argparse formats help with %
        flags = f.metadata.get("flags")
        if flags is None:
            flags = (f"--{f.name.replace('_', '-')}",)
        if not flags:
            continue  # positional or file-only (data.corpus)
        group = groups.setdefault(section, p.add_argument_group(section))
        kind = _value_type(f, cls)
        dest = f"{section}.{f.name}"
        if kind is bool:
            group.add_argument(*flags, dest=dest, action="store_true", help=help)
        else:
            group.add_argument(*flags, dest=dest, type=_tuple_type(kind) if typing.get_origin(kind) is tuple else kind, choices=_choices(section, f),
                               metavar=None if _choices(section, f) else f.name.upper(), help=help)
    p.set_defaults(func=run_train)


def _parse_value(raw: str, kind: Any) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"expected true or false, got {raw!r}")
        return raw.lower() in ("true", "1")
    if typing.get_origin(kind) is tuple:  # comma-separated items
        item = typing.get_args(kind)[0]
        return tuple(_parse_value(x.strip(), item) for x in raw.split(",") if x.strip())
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"expected {kind.__name__}, got {raw!r}") from None


def _tuple_type(kind: Any):
    """A comma-separated tuple for argparse: a bad item is argparse's own one-line usage error."""
    def parse(raw: str) -> Any:
        try:
            return _parse_value(raw, kind)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def config_from_args(args: argparse.Namespace):
    from sgns_jax.config import SECTIONS, TrainConfig

    base = TrainConfig.load(args.config) if getattr(args, "config", None) else None
    d = base.to_dict() if base else {s: {} for s in SECTIONS}
    types = {f"{section}.{f.name}": _value_type(f, cls) for section, cls, f, _ in _fields()}
    if getattr(args, "loss.name", d["loss"].get("name")) != d["loss"].get("name"):
        d["loss"] = {}  # another strategy than the config file's: its options do not apply
    for dest in types:
        if hasattr(args, dest):
            section, key = dest.split(".")
            d[section][key] = getattr(args, dest)
    if getattr(args, "workers", None) is not None:
        from sgns_jax.engine.runners import SingleDevice, Workers

        d["run"].update(parallelism=Workers.name if args.workers > 1 else SingleDevice.name,
                        devices=args.workers)
    for item in getattr(args, "overrides", None) or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in types:
            raise ConfigError(f"--set takes SECTION.FIELD=VALUE with a known field, got {item!r}")
        section, name = key.split(".")
        d[section][name] = _parse_value(raw, types[key])
    if getattr(args, "corpus", None):
        d["data"]["corpus"] = args.corpus
    if not d["data"].get("corpus"):
        raise ConfigError("no corpus given (a CORPUS argument or data.corpus in --config)")
    return TrainConfig.from_dict(d)


def use_compilation_cache(cache_dir: str | None) -> None:
    """Keep compiled training calls on disk, in ``xla/`` of the corpus cache (``--cache-dir``,
    default ``$SGNS_JAX_CACHE`` or ``~/.cache/sgns_jax``; ``--cache-dir ""`` turns both off): a
    later run with the same shapes loads them instead of compiling. JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` wins when set."""
    import os
    from pathlib import Path

    import jax

    from sgns_jax.data.corpus import default_cache_dir

    if cache_dir == "" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    xla = Path(cache_dir or default_cache_dir()) / "xla"
    try:
        xla.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable cache: compile every time (the corpus cache warns about it)
    if not os.access(xla, os.W_OK):
        return
    jax.config.update("jax_compilation_cache_dir", str(xla))
    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)  # JAX's 1 s skips ours


def run_train(args: argparse.Namespace) -> None:
    from sgns_jax.train.loop import output_paths, train

    cfg = config_from_args(args)
    use_compilation_cache(cfg.data.cache_dir)
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
        print(f"wrote {paths['vectors']}, {paths['state']}, {paths['config']} "
              f"(their sizes and SHA-256 in {paths['manifest']})")

