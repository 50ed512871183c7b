"""Adaptive softmax (Grave et al. 2017) against an independent numpy implementation of
torch.nn.AdaptiveLogSoftmaxWithLoss's definition, and its properties: normalised, equal to the
full softmax with one cluster, updates confined to the clusters a batch reaches."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgns_jax.errors import ConfigError
from sgns_jax.losses import make_output_layer
from sgns_jax.losses.adaptive_softmax import coverage_cutoffs
from sgns_jax.engine.step import init_state, param_specs, train_step
from sgns_jax.engine.updates import make_update_rule

V, D, B = 40, 12, 16
COUNTS = np.sort(np.random.default_rng(0).integers(1, 500, V))[::-1].copy()
SETTINGS = [((), 4.0), ((10,), 1.0), ((10,), 4.0), ((5, 20), 2.0), ((3, 9, 27), 2.0)]

def jitted_train_step(state, batch, key, lr, **static):
    """train_step compiled whole, as the runners run it (un-jitted, JAX dispatches and compiles
    each operation on its own: many times slower)."""
    return jax.jit(functools.partial(train_step, **static))(state, batch, key, lr)



def params_for(layer, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s.shape).astype(dtype) * 0.5 for k, s in param_specs(layer, V, D).items()}


def numpy_log_probs(params, h, cutoffs, div_value):
    """torch's AdaptiveLogSoftmaxWithLoss.log_prob, written out: head over the shortlist and
    one logit per cluster; cluster i = log_softmax of (h @ proj_i) @ out_i.T plus its head
    logit; d_i = max(1, D // div^(i+1)) (checked through the parameter shapes)."""
    def log_softmax(x):
        return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)

    head = log_softmax(h @ params["head"].T)
    edges = [*cutoffs, V]
    c0 = cutoffs[0] if cutoffs else V
    out = [head[:, :c0]]
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        proj, table = params[f"tail{i}_proj"], params[f"tail{i}_out"]
        assert proj.shape == (D, max(1, int(D // div_value ** (i + 1)))) and table.shape[0] == hi - lo
        out.append(head[:, c0 + i:c0 + i + 1] + log_softmax((h @ proj) @ table.T))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("cutoffs, div_value", SETTINGS)
def test_probabilities_sum_to_one_and_equal_the_numpy_definition(cutoffs, div_value):
    jax.config.update("jax_enable_x64", True)
    try:
        layer = make_output_layer("adaptive", COUNTS, cutoffs=cutoffs, div_value=div_value)
        params = params_for(layer)
        h = np.random.default_rng(1).normal(size=(B, D))
        ref = numpy_log_probs(params, h, cutoffs, div_value)
        np.testing.assert_allclose(np.exp(ref).sum(1), 1.0, rtol=1e-12)
        got = np.asarray(layer.log_probs({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(h)))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
        # The training loss is −log p of each pair's target, with the mask as weight.
        rng = np.random.default_rng(2)
        batch = {"input": rng.integers(0, V, B).astype(np.int32),
                 "output": rng.integers(0, V, B).astype(np.int32), "mask": (rng.random(B) < 0.8) * 1.0}
        params["w_in"] = rng.normal(size=(V, D)) * 0.5
        _, aux = layer.loss({k: jnp.asarray(v) for k, v in params.items()},
                            {k: jnp.asarray(v) for k, v in batch.items()}, None)
        logp = numpy_log_probs(params, params["w_in"][batch["input"]], cutoffs, div_value)
        expected = -np.sum(logp[np.arange(B), batch["output"]] * batch["mask"])
        np.testing.assert_allclose(float(aux["sum"]), expected, rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("cutoffs, div_value", SETTINGS[1:])
def test_gradients_match_finite_differences(cutoffs, div_value):
    jax.config.update("jax_enable_x64", True)
    try:
        layer = make_output_layer("adaptive", COUNTS, cutoffs=cutoffs, div_value=div_value, softmax_block=7)
        params = {k: jnp.asarray(v) for k, v in params_for(layer, 3).items()}
        params["w_in"] = jnp.asarray(np.random.default_rng(4).normal(size=(V, D)) * 0.5)
        rng = np.random.default_rng(5)
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


@pytest.mark.parametrize("div_value", [1.0, 4.0])
def test_one_cluster_is_the_full_softmax(div_value):
    """cutoffs () leave the head alone over every word: the full softmax, whatever div_value."""
    adaptive = make_output_layer("adaptive", COUNTS, cutoffs=(), div_value=div_value)
    full = make_output_layer("full", COUNTS)
    rng = np.random.default_rng(6)
    w_in, w_out = rng.normal(size=(V, D)), rng.normal(size=(V, D))
    batch = {"input": jnp.asarray(rng.integers(0, V, B), jnp.int32),
             "output": jnp.asarray(rng.integers(0, V, B), jnp.int32), "mask": jnp.ones(B)}
    assert set(param_specs(adaptive, V, D)) == {"w_in", "head"}
    a = adaptive.loss({"w_in": jnp.asarray(w_in, jnp.float32), "head": jnp.asarray(w_out, jnp.float32)}, batch, None)
    f = full.loss({"w_in": jnp.asarray(w_in, jnp.float32), "w_out": jnp.asarray(w_out, jnp.float32)}, batch, None)
    np.testing.assert_allclose(float(a[0]), float(f[0]), rtol=1e-6)


def test_a_step_changes_only_the_clusters_its_targets_reach():
    """SGD on a batch whose targets are head words and cluster 0's: cluster 1's projection and
    table are unchanged, and so are the input rows the batch does not read."""
    layer = make_output_layer("adaptive", COUNTS, cutoffs=(5, 20))
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params_for(layer, 7, np.float32).items()}
    params["w_in"] = jnp.asarray(np.random.default_rng(8).normal(size=(V, D)), jnp.float32)
    batch = {"input": jnp.asarray([1, 2, 3, 3], jnp.int32), "output": jnp.asarray([0, 4, 7, 19], jnp.int32),
             "mask": jnp.ones(4)}
    rule = make_update_rule("sgd", "sparse")
    new = jitted_train_step(init_state(params, rule), batch, jax.random.key(0), jnp.float32(0.1),
                     layer=layer, rule=rule)[0].params
    for k in ("tail1_proj", "tail1_out"):
        np.testing.assert_array_equal(new[k], params[k])
    for k in ("head", "tail0_proj", "tail0_out"):
        assert not np.allclose(new[k], params[k]), k
    untouched = np.setdiff1d(np.arange(V), [1, 2, 3])
    np.testing.assert_array_equal(np.asarray(new["w_in"])[untouched], np.asarray(params["w_in"])[untouched])


def test_default_cutoffs_cover_80_and_95_percent_of_the_tokens():
    counts = np.array([50, 20, 10, 8, 5, 3, 2, 1, 1])  # cumulative: .5 .7 .8 .88 .93 .96 .98 .99 1
    assert coverage_cutoffs(counts) == (3, 6)
    layer = make_output_layer("adaptive", counts)
    assert layer.cutoffs == (3, 6) and [b for b in layer.bounds] == [(3, 6), (6, 9)]
    assert coverage_cutoffs(np.array([1])) == ()  # one word: the head alone


@pytest.mark.parametrize("options, message", [
    ({"cutoffs": (20, 5)}, "strictly increasing"),
    ({"cutoffs": (0, 5)}, "strictly increasing"),
    ({"cutoffs": (5, 40)}, r"inside \(0, V = 40\)"),
    ({"div_value": 0.0}, "div_value must be > 0"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        make_output_layer("adaptive", COUNTS, **options)


@pytest.mark.parametrize("members", [10, 40])
def test_tails_evaluated_for_their_members_equal_the_whole_batch(members):
    """A tail cluster's softmax runs only for the examples in it, up to its capacity (here 22
    of 64), and over the whole batch, masked, when more fall in it: the loss and every gradient
    equal the whole-batch evaluation either way."""
    from sgns_jax.losses.adaptive_softmax import AdaptiveSoftmax

    few = AdaptiveSoftmax((5, 20), V, 2.0, shares=(0.05, 0.05))
    whole = AdaptiveSoftmax((5, 20), V, 2.0, shares=(1.0, 1.0))
    b = 64
    assert few.capacity(0, b) == 22 and whole.capacity(0, b) == b
    rng = np.random.default_rng(9)
    output = np.concatenate([rng.integers(5, 20, members), rng.integers(0, 5, b - members - 6),
                             rng.integers(20, V, 6)])
    batch = {"input": jnp.asarray(rng.integers(0, V, b), jnp.int32),
             "output": jnp.asarray(rng.permutation(output), jnp.int32), "mask": jnp.ones(b)}
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params_for(few, 10, np.float32).items()}
    params["w_in"] = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    (got, g_got), (ref, g_ref) = (jax.value_and_grad(lambda p: layer.loss(p, batch, None)[0])(params)
                                  for layer in (few, whole))
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-6)
    for k in params:
        np.testing.assert_allclose(np.asarray(g_got[k]), np.asarray(g_ref[k]), rtol=1e-5, atol=1e-7)
