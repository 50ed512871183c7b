"""The training chunk lowers for GPU and TPU (``jax.export`` from this CPU-only jaxlib) for every
registered strategy, update rule and accelerator runner, and the exported StableHLO has no host
callback, no custom call, no dynamic shape, every parameter buffer donated, and the matrix
products in the configured dtype. One device in-process (fast); the meshes of 2 devices in a
subprocess (slow, ``multidevice_checks.py lowering``)."""

import jax
import numpy as np
import pytest

from sgns_jax.config import TrainConfig
from sgns_jax.engine.lowering import export_chunk, inspect_module
from sgns_jax.losses import registered_variants

COUNTS = np.arange(300, 0, -1) * 10
VARIANTS = list(registered_variants())


def lowering_config(name, kw, **optim):
    kw = dict(kw)
    cbow = kw.pop("cbow", False)
    return TrainConfig().replace(loss={"name": name, **kw}, model={"dim": 16, "cbow": cbow},
                                 optim={"batch_size": 8, "steps_per_chunk": 4, **optim},
                                 run={"parallelism": "single", "devices": 1})


def check_module(module, params, matmul_dtype="float32"):
    assert not module.custom_calls, module.custom_calls  # host callbacks among them
    assert not module.dynamic_shapes
    assert set(module.params) == set(params) and set(module.donated_params) == set(params), module
    if module.dot_operand_types:
        expected = {"bfloat16": "bf16", "float32": "f32"}[matmul_dtype]
        assert expected in module.dot_operand_types, module.dot_operand_types


@pytest.mark.parametrize("name, kw", VARIANTS, ids=[f"{n}-{kw}" for n, kw in VARIANTS])
def test_every_strategy_lowers_for_gpu_and_tpu(name, kw):
    cfg = lowering_config(name, kw)
    exported = export_chunk(cfg, COUNTS)
    assert exported.platforms == ("cuda", "rocm", "tpu")
    from sgns_jax.engine.step import param_specs
    from sgns_jax.train.build import build_layer
    check_module(inspect_module(exported), param_specs(build_layer(cfg, COUNTS), 300, 16))


@pytest.mark.parametrize("name, kw", [("full", {}), ("ns", {"negative_mode": "batch"}),
                                      ("sampled", {}), ("adaptive", {}), ("dsoftmax", {})])
def test_bfloat16_products_lower_as_bfloat16(name, kw):
    module = inspect_module(export_chunk(lowering_config(name, {**kw, "matmul_dtype": "bfloat16"}), COUNTS))
    assert "bf16" in module.dot_operand_types and not module.custom_calls


@pytest.mark.parametrize("optim", [{"optimizer": "adam"}, {"update": "dense"}])
def test_other_update_rules_lower(optim):
    cfg = lowering_config("ns", {"negative_mode": "pair"}, **optim)
    check_module(inspect_module(export_chunk(cfg, COUNTS)), ("w_in", "w_out"))


@pytest.mark.parametrize("callback", ["debug", "pure"])
def test_a_host_callback_in_the_step_fails_the_lowering(monkeypatch, callback):
    """What the test above would catch: a host callback inserted into the loss cannot be lowered
    for the accelerators from here. jax.export refuses it itself (a pure_callback: "multi-
    platform lowering for python_callback" not implemented; a debug callback under the gradient
    fails in the same multi-platform lowering; on one platform, "serialization of host_callbacks
    is not yet implemented"), before inspect_module's custom-call check; the chunk without it
    lowers."""
    from sgns_jax.losses.negative_sampling import WindowNegativeSampling

    cfg = lowering_config("ns", {"negative_mode": "window"})
    export_chunk(cfg, COUNTS)
    original = WindowNegativeSampling.example_losses

    def with_callback(self, rows, lookups, batch):
        losses, weights = original(self, rows, lookups, batch)
        total = losses.sum()
        if callback == "debug":
            jax.debug.callback(lambda t: None, total)
        else:
            shape = jax.ShapeDtypeStruct((), np.float32)
            losses = losses + 0 * jax.pure_callback(lambda t: np.float32(0), shape,
                                                    jax.lax.stop_gradient(total))
        return losses, weights

    monkeypatch.setattr(WindowNegativeSampling, "example_losses", with_callback)
    with pytest.raises((TypeError, ValueError, NotImplementedError),
                       match=None if callback == "debug" else "callback"):
        export_chunk(cfg, COUNTS)


@pytest.mark.slow
def test_data_and_vocabulary_sharded_chunks_lower_on_a_mesh():
    from test_parallel import run_check

    results = run_check("lowering", devices=2)
    strategies = {name for name, _ in VARIANTS}
    # every variant data-parallel; each strategy's first also with adam, dense and sharded
    assert len(results) >= len(VARIANTS) + 2 * len(strategies)
    assert {label.rsplit("-", 1)[-1] for label in results} >= {"data", "adam", "dense", "vocab"}
    for label, r in results.items():
        assert not r["custom_calls"] and not r["dynamic_shapes"], label
        assert r["devices"] == 2 and r["donated"] == r["params"], label
        assert r["collectives"], label  # the mesh is really used
