"""The loss registry: every strategy registers its options class here, from its own module.

A strategy's options are a frozen dataclass subclassing :class:`LossOptions` (levanter's
registered config subclasses): its ``name`` field's default is the strategy's name, its other
fields are its options (types, defaults, help and choices in the field metadata), and its
methods build the layer, check and resolve the options and give the default batch size. The
config's ``[loss]`` section, ``--set loss.…``, the CLI's generated flags and choices, and the
tests' parametrisation are all read from here, so adding a strategy is one new module in
``sgns_jax/losses/`` (imported automatically) plus its tests.

    @register
    @dataclass(frozen=True)
    class MyOptions(NoiseOptions):
        name: str = "mine"
        negative: int = option(5, "K noise words per example")
        summary: ClassVar[str] = "one line for --help"

        def build(self, counts, cbow):
            return MyLayer(...)
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterator

import numpy as np

from sgns_jax.errors import ConfigError
from sgns_jax.typecheck import check_type, is_tuple

DEFAULT_LOSS = "ns"


def option(default: Any, help: str, **meta: Any) -> Any:
    """A strategy option: a dataclass field with its help text (and ``choices``, ``flags``)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class LossOptions:
    """The ``[loss]`` section of a config: the base of every strategy's options class.

    Hooks a strategy overrides: ``build(counts, cbow)`` the layer; ``check(cbow)`` raises
    ``ConfigError`` for settings the layer cannot honour (each integer option must be ≥ 1
    unless the class says otherwise); ``resolve(cbow)`` fills the defaults that depend on the
    model (e.g. ns's sampling mode); ``batch_size(cbow, backend)`` the rows per step inside the
    layer's stable range, on the CPU or on a GPU/TPU (``backend``). ``summary`` is the line
    ``--help`` shows; ``test_variants`` are the keyword arguments of
    :func:`make_output_layer` the tests run (``cbow`` included).
    """

    name: str = option("", "the output layer (softmax approximation)", flags=("--loss",))

    summary: ClassVar[str] = ""
    test_variants: ClassVar[tuple[dict, ...]] = ({},)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if is_tuple(hints[f.name]) and isinstance(value, list):  # TOML/JSON arrays
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            check_type(f"loss.{f.name}", value, hints[f.name])

    def build(self, counts: np.ndarray, cbow: bool) -> Any:
        raise NotImplementedError

    def check(self, cbow: bool) -> None:
        pass

    def resolve(self, cbow: bool) -> "LossOptions":
        return self

    def batch_size(self, cbow: bool, backend: str = "cpu") -> int:
        return 256 if cbow else 1024

    def replace(self, **changes: Any) -> "LossOptions":
        return dataclasses.replace(self, **changes)

    def options(self) -> dict[str, Any]:
        """The strategy's options (every field but ``name``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


@dataclass(frozen=True)
class NoiseOptions(LossOptions):
    """Options of the strategies that draw noise words from counts^ns_exponent."""

    ns_exponent: float = option(0.75, "noise distribution: counts^this")

    def check(self, cbow: bool) -> None:
        super().check(cbow)
        if self.ns_exponent < 0:
            raise ConfigError(f"ns_exponent must be >= 0, got {self.ns_exponent}")


MATMUL_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class MatmulOptions(LossOptions):
    """Options of the strategies whose products are matrix products (``base.matmul``)."""

    matmul_dtype: str = option(
        "float32", "operands of the GEMM-shaped products; bfloat16 is for GPUs/TPUs: float32 "
                   "accumulation, float32 tables", choices=list(MATMUL_DTYPES))


_CLASSES: dict[str, type[LossOptions]] = {}


def register(cls: type[LossOptions]) -> type[LossOptions]:
    """Class decorator: register a strategy's options class under its ``name`` default."""
    name = next(f.default for f in fields(cls) if f.name == "name")
    if not name:
        raise ValueError(f"{cls.__name__} needs a name (the default of its name field)")
    if name in _CLASSES and _CLASSES[name] is not cls:
        raise ValueError(f"loss {name!r} registered twice")
    _CLASSES[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a registration (tests that register a strategy of their own)."""
    _CLASSES.pop(name, None)


def _import_all() -> None:
    """Import every module of this package once, so every registration has run."""
    import sgns_jax.losses as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def specs() -> dict[str, type[LossOptions]]:
    """Every registered strategy's options class, by name."""
    _import_all()
    return dict(_CLASSES)


def loss_spec(name: str) -> type[LossOptions]:
    """The options class registered as ``name``."""
    all_specs = specs()
    if name not in all_specs:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(all_specs)}")
    return all_specs[name]


def loss_options(name: str = DEFAULT_LOSS, **options: Any) -> LossOptions:
    """The options of strategy ``name``; an option it does not have is a ``ConfigError``."""
    cls = loss_spec(name)
    known = {f.name for f in fields(cls)} - {"name"}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"unknown key(s) in [loss] for loss {name}: {', '.join(sorted(unknown))} "
                          f"(its options: {', '.join(sorted(known)) or 'none'})")
    return cls(**options)


def replace_options(current: LossOptions, changes: dict[str, Any]) -> LossOptions:
    """``current`` with ``changes``; a change of ``name`` starts from the new strategy's
    defaults (options belong to their strategy)."""
    name = changes.get("name", current.name)
    if name != current.name:
        return loss_options(**changes)
    return loss_options(name, **{**current.options(), **{k: v for k, v in changes.items() if k != "name"}})


def option_fields() -> dict[str, tuple[dataclasses.Field, type, list[str]]]:
    """Every option of every strategy (``name`` aside), by field name: (the field, the class
    that declares it first, the strategies that have it). One name means one type everywhere."""
    out: dict[str, tuple[dataclasses.Field, type, list[str]]] = {}
    for name, cls in specs().items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name == "name":
                continue
            if f.name in out:
                first, owner, users = out[f.name]
                if typing.get_type_hints(owner)[f.name] != hints[f.name]:
                    raise ValueError(f"loss option {f.name!r} has two types: {owner.__name__} "
                                     f"and {cls.__name__}")
                users.append(name)
            else:
                out[f.name] = (f, cls, [name])
    return out


def check_options(options: LossOptions, cbow: bool) -> None:
    """Raise ``ConfigError`` if the options do not make a valid layer."""
    for f in fields(options):
        value = getattr(options, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"{f.name} must be >= 1, got {value}")
        if f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
            raise ConfigError(f"unknown {f.name} {value!r}; choose one of "
                              f"{', '.join(map(str, f.metadata['choices']))}")
    options.check(cbow)


def make_output_layer(name: str, counts: np.ndarray, *, cbow: bool = False, **options: Any):
    """Build a registered output layer.

    Args:
      name: a registered loss (:func:`specs` lists them).
      counts: int [V] word counts, most frequent first (noise distributions, Huffman tree).
      cbow: CBOW (the input is the mean of the context vectors) instead of skip-gram.
      **options: the strategy's options (``negative=5``, ``negative_mode="pair"``, ...).
    Returns:
      The layer: ``layer.loss(params, batch, key) -> (mean, aux)``.
    Raises:
      ``ConfigError`` for an unknown name or options the layer cannot honour.
    """
    return build_layer(loss_options(name, **options), counts, cbow)


def build_layer(options: LossOptions, counts: np.ndarray, cbow: bool):
    """The layer ``options`` describe, checked and with its model-dependent defaults."""
    check_options(options, cbow)
    return options.resolve(cbow).build(np.asarray(counts), cbow)


def registered_variants() -> Iterator[tuple[str, dict]]:
    """(name, make_output_layer keyword arguments) of every registered variant."""
    for name, cls in specs().items():
        for kw in cls.test_variants:
            yield name, dict(kw)
