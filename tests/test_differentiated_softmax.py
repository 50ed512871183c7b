"""Differentiated softmax (Chen et al. 2016) against an independent numpy definition: a block-
diagonal output layer (band j's words see the j-th slice of h), one softmax over every word."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgns_jax.errors import ConfigError
from sgns_jax.losses import make_output_layer
from sgns_jax.losses.differentiated_softmax import halving_widths
from sgns_jax.engine.step import param_specs

V, D, B = 40, 12, 16
COUNTS = np.sort(np.random.default_rng(0).integers(1, 500, V))[::-1].copy()
SETTINGS = [((), None), ((10,), (8, 4)), ((10,), (2, 10)), ((5, 20), None), ((3, 9, 27), (3, 3, 3, 3))]


def numpy_log_probs(params, h, cutoffs, widths):
    """The block-diagonal logits written out with an explicit [V, D] matrix: row w holds band
    j's vector in the columns of slice j and zeros elsewhere; then a log-softmax over V."""
    edges = [0, *cutoffs, V]
    offsets = np.cumsum([0, *widths])
    full = np.zeros((V, D))
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        full[lo:hi, offsets[j]:offsets[j + 1]] = params[f"band{j}"]
    logits = h @ full.T
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


@pytest.mark.parametrize("cutoffs, widths", SETTINGS)
def test_probabilities_sum_to_one_and_equal_the_numpy_definition(cutoffs, widths):
    jax.config.update("jax_enable_x64", True)
    try:
        layer = make_output_layer("dsoftmax", COUNTS, cutoffs=cutoffs, widths=widths, softmax_block=7)
        widths = widths or halving_widths(D, len(cutoffs) + 1)
        rng = np.random.default_rng(1)
        params = {k: rng.normal(size=s.shape) * 0.5 for k, s in param_specs(layer, V, D).items()}
        assert [params[f"band{j}"].shape[1] for j in range(len(cutoffs) + 1)] == list(widths)
        h = rng.normal(size=(B, D))
        ref = numpy_log_probs(params, h, cutoffs, widths)
        np.testing.assert_allclose(np.exp(ref).sum(1), 1.0, rtol=1e-12)
        jparams = {k: jnp.asarray(v) for k, v in params.items()}
        np.testing.assert_allclose(np.asarray(layer.log_probs(jparams, jnp.asarray(h))), ref, rtol=1e-10, atol=1e-12)
        batch = {"input": rng.integers(0, V, B).astype(np.int32),
                 "output": rng.integers(0, V, B).astype(np.int32), "mask": (rng.random(B) < 0.8) * 1.0}
        _, aux = layer.loss(jparams, {k: jnp.asarray(v) for k, v in batch.items()}, None)
        logp = numpy_log_probs(params, params["w_in"][batch["input"]], cutoffs, widths)
        expected = -np.sum(logp[np.arange(B), batch["output"]] * batch["mask"])
        np.testing.assert_allclose(float(aux["sum"]), expected, rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("cutoffs, widths", SETTINGS[1:])
def test_gradients_match_finite_differences(cutoffs, widths):
    jax.config.update("jax_enable_x64", True)
    try:
        layer = make_output_layer("dsoftmax", COUNTS, cutoffs=cutoffs, widths=widths, softmax_block=7)
        rng = np.random.default_rng(3)
        params = {k: jnp.asarray(rng.normal(size=s.shape) * 0.5) for k, s in param_specs(layer, V, D).items()}
        batch = {"input": jnp.asarray(rng.integers(0, V, B), jnp.int32),
                 "output": jnp.asarray(rng.integers(0, V, B), jnp.int32), "mask": jnp.ones(B)}
        f = jax.jit(lambda p: layer.loss(p, batch, None)[0])  # 7 calls, one compilation
        grads = jax.jit(jax.grad(f))(params)
        for _ in range(3):
            direction = {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}
            eps = 1e-6
            fd = (f({k: params[k] + eps * direction[k] for k in params})
                  - f({k: params[k] - eps * direction[k] for k in params})) / (2 * eps)
            analytic = sum(jnp.vdot(grads[k], direction[k]) for k in params)
            np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-9)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_one_band_is_the_full_softmax():
    dsoftmax = make_output_layer("dsoftmax", COUNTS, cutoffs=())
    full = make_output_layer("full", COUNTS)
    rng = np.random.default_rng(6)
    w_in, w_out = (jnp.asarray(rng.normal(size=(V, D)), jnp.float32) for _ in range(2))
    batch = {"input": jnp.asarray(rng.integers(0, V, B), jnp.int32),
             "output": jnp.asarray(rng.integers(0, V, B), jnp.int32), "mask": jnp.ones(B)}
    assert set(param_specs(dsoftmax, V, D)) == {"w_in", "band0"}
    a = dsoftmax.loss({"w_in": w_in, "band0": w_out}, batch, None)[0]
    f = full.loss({"w_in": w_in, "w_out": w_out}, batch, None)[0]
    np.testing.assert_allclose(float(a), float(f), rtol=1e-6)


def test_default_widths_halve_and_sum_to_the_dimension():
    assert halving_widths(100, 3) == (50, 25, 25)
    assert halving_widths(100, 1) == (100,)
    assert halving_widths(8, 4) == (4, 2, 1, 1)
    layer = make_output_layer("dsoftmax", COUNTS, cutoffs=(5, 20))
    assert [s.shape for k, s in param_specs(layer, V, D).items() if k != "w_in"] == [(5, 6), (15, 3), (20, 3)]


@pytest.mark.parametrize("options, message", [
    ({"cutoffs": (20, 5)}, "strictly increasing"),
    ({"cutoffs": (5, 40)}, r"inside \(0, V = 40\)"),
    ({"cutoffs": (5,), "widths": (4, 4, 4)}, "one width per band"),
    ({"widths": (6, 6)}, "give cutoffs too"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        make_output_layer("dsoftmax", COUNTS, **options)


def test_widths_must_sum_to_the_dimension():
    layer = make_output_layer("dsoftmax", COUNTS, cutoffs=(5,), widths=(4, 4))
    with pytest.raises(ConfigError, match="sum to the dimension 12"):
        param_specs(layer, V, D)
