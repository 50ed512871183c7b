"""The training chunk lowered for a GPU or TPU without one: ``jax.export`` of the compiled chunk
function as a runner builds it, and what its StableHLO says.

A host callback, a CPU-only custom call, a dynamic shape or a lost buffer donation would first
show on the device; :func:`export_chunk` lowers the chunk for ``platforms`` (``cuda``, ``rocm``,
``tpu``: the CPU-only jaxlib can lower for all of them) and :func:`inspect_module` reads the
exported module for each of those faults. Used by ``tests/test_lowering.py`` and the device
check.

:func:`step_cost` reads what XLA's cost analysis of one compiled step says it costs (flops and
bytes accessed per training pair): the cost columns of the strategy comparison and the
roofline note (docs/roofline.md).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import jax
import numpy as np

ACCELERATORS = ("cuda", "rocm", "tpu")


@dataclass(frozen=True)
class ChunkModule:
    """What the exported chunk's StableHLO holds."""

    platforms: tuple[str, ...]
    devices: int
    custom_calls: frozenset[str]       # every custom_call target (host callbacks are some)
    dynamic_shapes: bool               # a tensor type with a dimension unknown until run time
    params: tuple[str, ...]            # the parameter leaves among the main function's arguments
    donated_params: tuple[str, ...]    # those whose buffer an output reuses (tf.aliasing_output)
    dot_operand_types: frozenset[str]  # element types of every dot_general's operands
    collectives: frozenset[str]        # all_reduce, all_gather, ... across the mesh

    @property
    def host_callbacks(self) -> frozenset[str]:
        return frozenset(c for c in self.custom_calls if "callback" in c.lower())


def _chunk_and_inputs(cfg, counts: np.ndarray):
    """The runner ``cfg`` describes and zero inputs of its chunk's shapes."""
    from sgns_jax.engine import runners
    from sgns_jax.engine.step import init_params, init_state
    from sgns_jax.train.build import batch_spec, build_layer, chunk_consts, make_schedule

    layer = build_layer(cfg, counts)
    mode = runners.runner(cfg.run.parallelism)
    rule = mode.update_rule(cfg)
    spec = batch_spec(cfg, layer)
    runner = mode.build(cfg, layer, rule, make_schedule(cfg, 10**6), spec, cfg.run.devices or 1,
                        chunk_consts(spec, counts, jax.random.key_data(jax.random.key(0))))
    state = runner.place(init_state(init_params(layer, len(counts), cfg.model.dim,
                                                jax.random.key(0)), rule))
    arrays = runner.place_arrays(spec.zero_chunk())
    return runner, spec, (state, arrays, runner.root_key)


def export_chunk(cfg, counts: np.ndarray, platforms: tuple[str, ...] = ACCELERATORS) -> jax.export.Exported:
    """The chunk function of the run ``cfg`` describes (its runner, update rule and batches;
    ``run.parallelism`` and ``run.devices`` set), lowered for ``platforms`` with zero inputs of
    the run's shapes. The devices must exist in this process (on the CPU:
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N``)."""
    runner, _, inputs = _chunk_and_inputs(cfg, counts)
    return jax.export.export(runner.chunk_fn, platforms=platforms)(*inputs)


@contextlib.contextmanager
def _unrolled_threefry():
    """Lower the threefry PRNG as GPU and TPU do, its 5 rounds unrolled: the CPU lowering rolls
    them into a loop, which the cost analysis would count once. JAX's lowering rules are
    internal; if they move, the loop check of :func:`step_cost` refuses the figure."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    cpu_rules = mlir._platform_specific_lowerings["cpu"]
    saved = cpu_rules.get(threefry.threefry2x32_p)
    mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule,
                           platform="cpu", inline=False)
    try:
        yield
    finally:
        if saved is None:
            cpu_rules.pop(threefry.threefry2x32_p, None)
        else:
            cpu_rules[threefry.threefry2x32_p] = saved


@dataclass(frozen=True)
class StepCost:
    """XLA's cost analysis of one compiled training step, per training example (a pair, or a
    window in the windows layout), on the backend this process compiles for."""

    flops: float            # floating-point operations per example
    bytes_accessed: float   # bytes read and written per example, as XLA counts them
    examples_per_step: int  # rows of the step's batch
    conditional: bool       # the step branches: XLA counted the costliest branch


def step_cost(cfg, counts: np.ndarray) -> StepCost:
    """Flops and bytes per example of one training step of the run ``cfg`` describes, from
    ``compiled.cost_analysis()`` of its chunk compiled with one step.

    XLA's cost analysis counts a loop's body once, whatever its trip count (the chunk's
    ``lax.scan`` over steps, the full softmax's blocks beyond ``softmax_block`` rows): one step
    has no chunk loop, and a step that still holds a loop is refused rather than undercounted.
    A conditional counts its costliest branch (an upper bound; ``conditional`` says so). Bytes
    accessed count an in-place scatter into a table as reading and writing the whole table, so
    they hold a term that grows with V even where the rows a step touches do not
    (docs/roofline.md separates it by a fit over V)."""
    one_step = cfg.replace(optim={"steps_per_chunk": 1})
    runner, spec, inputs = _chunk_and_inputs(one_step, counts)
    fn = runner.chunk_fn if hasattr(runner.chunk_fn, "lower") else jax.jit(runner.chunk_fn)
    with _unrolled_threefry():
        compiled = fn.lower(*inputs).compile()
    hlo = compiled.as_text()
    if " while(" in hlo:
        raise ValueError("the compiled step holds a loop, whose body XLA's cost analysis counts "
                         "once; give the full softmax a softmax_block of at least V")
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    rows = spec.batch_size
    return StepCost(flops=float(cost["flops"]) / rows, bytes_accessed=float(cost["bytes accessed"]) / rows,
                    examples_per_step=rows, conditional=" conditional(" in hlo)


_ARG = re.compile(r"%arg\d+: tensor<[^>]*>( \{[^}]*\})? loc\(\"([^\"]*)\"\)")


def inspect_module(exported: jax.export.Exported) -> ChunkModule:
    """Read an exported chunk's StableHLO for the faults the device would show."""
    text = exported.mlir_module()
    main = next(line for line in text.splitlines() if "func.func public @main" in line)
    params, donated = [], []
    for attrs, name in _ARG.findall(main):
        m = re.match(r"state\.params\['(\w+)'\]", name)
        if m:
            params.append(m.group(1))
            if "tf.aliasing_output" in attrs or "jax.buffer_donor" in attrs:
                donated.append(m.group(1))
    dots = re.findall(r"stablehlo\.dot_general[^\n]*: \(tensor<([^>]*)>, tensor<([^>]*)>\)", text)
    return ChunkModule(
        platforms=tuple(exported.platforms), devices=exported.nr_devices,
        custom_calls=frozenset(re.findall(r"custom_call @([\w.]+)", text)),
        dynamic_shapes=bool(re.search(r"tensor<(\d+x)*\?", text)),
        params=tuple(params), donated_params=tuple(donated),
        dot_operand_types=frozenset(t.rsplit("x", 1)[-1] for pair in dots for t in pair),
        collectives=frozenset(re.findall(r"stablehlo\.(all_reduce|all_gather|reduce_scatter|"
                                         r"all_to_all|collective_permute)", text)))
