"""The cost columns of the comparison come from XLA's cost analysis of the compiled step
(``sgns_jax.engine.lowering.step_cost``): they scale with V as each strategy's algorithm does."""

import math

import numpy as np
import pytest

from sgns_jax.config import TrainConfig
from sgns_jax.engine.lowering import step_cost


def zipf_counts(v: int) -> np.ndarray:
    return (10**6 / np.arange(1, v + 1)).astype(np.int64) + 1


def cost(loss: dict, v: int):
    cfg = TrainConfig().replace(loss=loss, model={"dim": 32}, data={"window": 5},
                                optim={"batch_size": 64, "steps_per_chunk": 8},
                                run={"parallelism": "single", "devices": 1})
    return step_cost(cfg, zipf_counts(v))


def test_full_softmax_flops_per_pair_grow_linearly_in_v():
    small, large = cost({"name": "full"}, 1000), cost({"name": "full"}, 4000)
    assert small.examples_per_step == 64  # per pair of one step, not of the chunk
    assert large.flops / small.flops == pytest.approx(4.0, rel=0.10)
    # Three [B×D]·[D×V] products (logits, both gradients): at least 6·V·D flops per pair.
    assert large.flops >= 6 * 4000 * 32


def test_hierarchical_softmax_flops_grow_by_at_most_log_v():
    small, large = cost({"name": "hs", "hs_paths": "pair"}, 1000), cost({"name": "hs", "hs_paths": "pair"}, 16000)
    assert 1.0 < large.flops / small.flops <= math.log(16000) / math.log(1000)


def test_negative_sampling_flops_do_not_grow_with_v():
    small, large = (cost({"name": "ns", "negative": 5, "negative_mode": "pair"}, v) for v in (1000, 16000))
    assert large.flops == pytest.approx(small.flops, rel=0.01)


def test_a_step_with_a_loop_is_refused_not_undercounted():
    # V > softmax_block: the normaliser loops over blocks, which the cost analysis counts once.
    with pytest.raises(ValueError, match="loop"):
        cost({"name": "full", "softmax_block": 256}, 1000)


def test_the_cpu_prng_lowering_is_restored():
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    rules = mlir._platform_specific_lowerings["cpu"]
    before = rules[threefry.threefry2x32_p]
    cost({"name": "ns", "negative": 5, "negative_mode": "pair"}, 500)
    assert rules[threefry.threefry2x32_p] is before
