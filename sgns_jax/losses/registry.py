"""The loss registry: every output layer registers itself here, from its own module.

An entry says how to build the layer from the ``[loss]`` options, which of those options it
reads, its default batch size, the rules its options must satisfy, and the variants the test
suite runs it in. The CLI's choices, the config's validation and defaults, and the tests'
parametrisation are all read from here, so adding a strategy is one new module in
``sgns_jax/losses/`` (imported automatically) plus its tests.

    @register
    def my_loss() -> LossSpec:
        return LossSpec("mine", "one line for --help", build=..., options=("negative",))
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterator

import numpy as np

from sgns_jax.errors import ConfigError


@dataclass(frozen=True)
class LossOptions:
    """The ``[loss]`` section of a config: the strategy's name and the options strategies read
    (each registry entry lists the ones it uses)."""

    name: str = field(default="ns", metadata={"help": "the output layer (softmax approximation)"})
    negative: int = field(default=5, metadata={"help": "K noise words per example (ns, nce)"})
    negative_mode: str | None = field(default=None, metadata={
        "help": "how ns draws its noise (default: window for skip-gram, pair for CBOW)"})
    shared_samples: int = field(default=64, metadata={
        "help": "S noise words shared by a batch (ns batch mode, sampled, blackout)"})
    ns_exponent: float = field(default=0.75, metadata={"help": "noise distribution: counts^this"})
    hs_paths: str | None = field(default=None, metadata={
        "choices": ["window", "pair"], "help": "hs: 'window' (the contexts of a centre share its path; skip-gram default) or "
                "'pair' (a path per pair; CBOW)"})
    softmax_block: int = field(default=32768, metadata={
        "help": "vocabulary rows per block of the full softmax's normaliser"})
    matmul_dtype: str = field(default="float32", metadata={
        "choices": ["float32", "bfloat16"],
        "help": "operands of the GEMM-shaped products (full, sampled, blackout, ns batch "
                "mode); bfloat16 is for GPUs/TPUs: float32 accumulation, float32 tables"})

    def replace(self, **changes: Any) -> "LossOptions":
        return replace(self, **changes)


@dataclass(frozen=True)
class LossSpec:
    """A registered output layer.

    ``build(counts, options, cbow)`` returns the layer; ``check(options, cbow)`` raises
    ``ConfigError`` for settings the layer cannot honour; ``resolve(options, cbow)`` fills the
    defaults that depend on the model (e.g. ns's sampling mode); ``default_batch_size(options,
    cbow)`` gives the rows per step inside the layer's stable range, on the CPU, and
    ``accelerator_batch_size`` on a GPU or TPU (None: the same); ``test_variants`` are the
    keyword arguments of :func:`make_output_layer` the tests run (``cbow`` included).
    """

    name: str
    summary: str
    build: Callable[[np.ndarray, LossOptions, bool], Any]
    options: tuple[str, ...] = ()
    default_batch_size: Callable[[LossOptions, bool], int] = lambda options, cbow: 1024
    accelerator_batch_size: Callable[[LossOptions, bool], int] | None = None
    check: Callable[[LossOptions, bool], None] = lambda options, cbow: None
    resolve: Callable[[LossOptions, bool], LossOptions] = lambda options, cbow: options
    test_variants: tuple[dict, ...] = ({},)


_SPECS: dict[str, LossSpec] = {}
MATMUL_DTYPES = ("float32", "bfloat16")


def register(make_spec: Callable[[], LossSpec]) -> Callable[[], LossSpec]:
    """Decorator: register the spec the function returns (at import of its module)."""
    spec = make_spec()
    if spec.name in _SPECS:
        raise ValueError(f"loss {spec.name!r} registered twice")
    _SPECS[spec.name] = spec
    return make_spec


def _import_all() -> None:
    """Import every module of this package once, so every registration has run."""
    import sgns_jax.losses as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def specs() -> dict[str, LossSpec]:
    """Every registered loss, by name."""
    _import_all()
    return dict(_SPECS)


def loss_spec(name: str) -> LossSpec:
    all_specs = specs()
    if name not in all_specs:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(all_specs)}")
    return all_specs[name]


def check_options(options: LossOptions, cbow: bool) -> None:
    """Raise ``ConfigError`` if the options do not make a valid layer."""
    spec = loss_spec(options.name)
    for f in fields(LossOptions):
        value = getattr(options, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and f.name != "name" and value < 1:
            raise ConfigError(f"{f.name} must be >= 1, got {value}")
    if options.ns_exponent < 0:
        raise ConfigError(f"ns_exponent must be >= 0, got {options.ns_exponent}")
    if options.matmul_dtype not in MATMUL_DTYPES:
        raise ConfigError(f"unknown matmul_dtype {options.matmul_dtype!r}; choose one of "
                          f"{', '.join(MATMUL_DTYPES)}")
    if options.matmul_dtype != "float32" and "matmul_dtype" not in spec.options:
        gemm = [n for n, s in specs().items() if "matmul_dtype" in s.options]
        raise ConfigError(f"matmul_dtype {options.matmul_dtype} is for the losses whose products "
                          f"are matrix products ({', '.join(gemm)}); {options.name} has none")
    spec.check(options, cbow)


def resolve_options(options: LossOptions, cbow: bool) -> LossOptions:
    """The options with the model-dependent defaults filled in (recorded in saved configs)."""
    return loss_spec(options.name).resolve(options, cbow)


def make_output_layer(name: str, counts: np.ndarray, *, cbow: bool = False, **options: Any):
    """Build a registered output layer.

    Args:
      name: a registered loss (:func:`specs` lists them).
      counts: int [V] word counts, most frequent first (noise distributions, Huffman tree).
      cbow: CBOW (the input is the mean of the context vectors) instead of skip-gram.
      **options: :class:`LossOptions` fields (``negative=5``, ``negative_mode="pair"``, ...).
    Returns:
      The layer: ``layer.loss(params, batch, key) -> (mean, aux)``.
    Raises:
      ``ConfigError`` for an unknown name or options the layer cannot honour.
    """
    opts = LossOptions(name=name, **options)
    check_options(opts, cbow)
    opts = resolve_options(opts, cbow)
    return loss_spec(name).build(np.asarray(counts), opts, cbow)


def registered_variants() -> Iterator[tuple[str, dict]]:
    """(name, make_output_layer keyword arguments) of every registered variant."""
    for name, spec in specs().items():
        for kw in spec.test_variants:
            yield name, dict(kw)
