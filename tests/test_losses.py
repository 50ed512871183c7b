"""Every output layer against an independent reference."""

import functools
import heapq
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sgns_jax.data.pairs import skipgram_pairs
from sgns_jax.data.vocab import noise_distribution
from sgns_jax.losses import (AliasSampler, FullSoftmax, HierarchicalSoftmax, huffman_codes,
                             make_output_layer, registered_variants)
from sgns_jax.engine.step import param_specs

V, D, B = 40, 6, 12
RNG = np.random.default_rng(0)
COUNTS = np.sort(RNG.integers(1, 200, V))[::-1].copy()

def jitted_train_step(state, batch, key, lr, **static):
    """train_step compiled whole, as the runners run it (un-jitted, JAX dispatches and compiles
    each operation on its own: many times slower)."""
    from sgns_jax.engine.step import train_step

    return jax.jit(functools.partial(train_step, **static))(state, batch, key, lr)



def make_params(layer, dtype=jnp.float32, scale=0.5, seed=0):
    """Random values for every leaf of the model's tree (w_in and the layer's own)."""
    rng = np.random.default_rng(seed)
    specs = param_specs(layer, V, D)
    return {name: jnp.asarray(rng.normal(size=s.shape) * scale, dtype) for name, s in specs.items()}


def make_batch(layer, seed=1):
    rng = np.random.default_rng(seed)
    if layer.layout == "pairs":
        return {"input": jnp.asarray(rng.integers(0, V, B), jnp.int32),
                "output": jnp.asarray(rng.integers(0, V, B), jnp.int32),
                "mask": jnp.asarray((rng.random(B) < 0.8), jnp.float32)}
    return {"centre": jnp.asarray(rng.integers(0, V, B), jnp.int32),
            "context": jnp.asarray(rng.integers(0, V, (B, 4)), jnp.int32),
            "mask": jnp.asarray(rng.random((B, 4)) < 0.7, jnp.float32)}


def small_blocks(name, block):
    """The full softmax's normaliser in blocks smaller than V, so the blocked path is tested."""
    return {"softmax_block": block} if name == "full" else {}


# Every registered layer in every variant its registry entry lists (sgns_jax.losses.registry).
VARIANTS = list(registered_variants())
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in VARIANTS]


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, V, 64])
def test_full_softmax_equals_log_softmax(chunk):
    layer = FullSoftmax(block=chunk)
    params = make_params(layer)
    batch = make_batch(layer)
    mean, aux = layer.loss(params, batch, None)
    logits = params["w_in"][batch["input"]] @ params["w_out"].T
    ref = -jax.nn.log_softmax(logits)[jnp.arange(B), batch["output"]]
    m = batch["mask"]
    np.testing.assert_allclose(mean, jnp.sum(ref * m) / m.sum(), rtol=1e-5)
    np.testing.assert_allclose(aux["sum"], jnp.sum(ref * m), rtol=1e-5)


# --- hierarchical softmax ----------------------------------------------------------------

def reference_huffman_cost(counts):
    """Optimal Σ count·length by the textbook heap algorithm (independent of the module)."""
    heap = list(map(int, counts))
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@pytest.mark.parametrize("v", [1, 2, 3, 17, 300])
def test_huffman_tree_is_optimal_prefix_free_and_monotone(v):
    counts = np.random.default_rng(v).integers(1, 1000, v)
    tree = huffman_codes(counts)
    codes = ["".join(map(str, tree.codes[w, :tree.lengths[w]])) for w in range(v)]
    if v > 1:
        for a, b in itertools.permutations(range(v), 2):
            assert not codes[b].startswith(codes[a])
    assert np.sum(counts * tree.lengths) == reference_huffman_cost(counts)
    order = np.argsort(-counts, kind="stable")
    assert np.all(np.diff(tree.lengths[order]) >= 0)
    # Inner nodes on each path are distinct ids in 0..V-2, the root first.
    if v > 1:
        assert np.all(tree.points[:, 0] == v - 2)
        assert tree.points[tree.mask].max() <= v - 2
    assert huffman_codes(counts).codes.tolist() == tree.codes.tolist()  # deterministic


@pytest.mark.parametrize("v", [1, 2, 5, 200])
def test_hs_probabilities_sum_to_one(v):
    rng = np.random.default_rng(v)
    layer = HierarchicalSoftmax(rng.integers(1, 500, v))
    nodes = jnp.asarray(rng.normal(size=(max(v - 1, 1), D)), jnp.float32)
    for _ in range(3):
        h = jnp.asarray(rng.normal(size=D), jnp.float32)
        total = jnp.sum(jnp.exp(layer.log_prob_all(nodes, h)))
        np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_hs_loss_is_minus_log_leaf_probability():
    layer = HierarchicalSoftmax(COUNTS)
    params = make_params(layer)
    batch = make_batch(layer)
    per_pair, _ = layer.example_losses(
        {"input": params["w_in"][batch["input"]],
         "nodes": params["w_out"][layer.lookups(batch, None)["nodes"].ids]},
        layer.lookups(batch, None), batch)
    for b in range(B):
        logp = layer.log_prob_all(params["w_out"], params["w_in"][batch["input"][b]])
        np.testing.assert_allclose(per_pair[b], -logp[batch["output"][b]], rtol=1e-5)


def test_hs_matches_a_hand_computed_tree():
    """Counts A 4, B 2, C 1, D 1. word2vec's merge (strict <: on equal weights the inner node
    is taken first) builds inner nodes n0 = C+D, n1 = n0+B, n2 = n1+A (root), and the second
    pick of each merge gets code 1, so, root first: A = [n2:1], B = [n2:0, n1:1],
    C = [n2:0, n1:0, n0:1], D = [n2:0, n1:0, n0:0]. With code 1 meaning σ(−u·h):
    p(A) = σ(−x2), p(B) = σ(x2)σ(−x1), p(C) = σ(x2)σ(x1)σ(−x0), p(D) = σ(x2)σ(x1)σ(x0).
    Mutants caught: the sign convention flipped (p(A) = σ(x2): sums to one all the same), the
    tie taken by the leaf (B merges before n0), codes read leaf-first."""
    counts = np.array([4, 2, 1, 1])
    tree = huffman_codes(counts)
    paths = [[(int(p), int(c)) for p, c in zip(tree.points[w], tree.codes[w])][:tree.lengths[w]]
             for w in range(4)]
    assert paths == [[(2, 1)], [(2, 0), (1, 1)], [(2, 0), (1, 0), (0, 1)],
                     [(2, 0), (1, 0), (0, 0)]]
    layer = HierarchicalSoftmax(counts)
    rng = np.random.default_rng(0)
    nodes = rng.normal(size=(3, D))
    h = rng.normal(size=D)
    x0, x1, x2 = nodes @ h
    sig = lambda t: 1 / (1 + np.exp(-t))
    expected = np.log([sig(-x2), sig(x2) * sig(-x1), sig(x2) * sig(x1) * sig(-x0),
                       sig(x2) * sig(x1) * sig(x0)])
    params = {"w_in": jnp.asarray(np.tile(h, (4, 1)), jnp.float32),
              "w_out": jnp.asarray(nodes, jnp.float32)}
    batch = {"input": jnp.zeros(4, jnp.int32), "output": jnp.arange(4, dtype=jnp.int32),
             "mask": jnp.ones(4)}
    lookups = layer.lookups(batch, None)
    losses, _ = layer.example_losses(
        {"input": params["w_in"][batch["input"]], "nodes": params["w_out"][lookups["nodes"].ids]},
        lookups, batch)
    np.testing.assert_allclose(-np.asarray(losses), expected, rtol=1e-5)


def _log_sigmoid(x):
    return -np.logaddexp(0, -x)


def test_nce_equals_its_numpy_formula():
    """NCE (Mnih & Teh 2012): Δ(w) = u_w·h − log(K·q(w)), loss −log σ(Δ(c)) − Σ_k log σ(−Δ(n_k)),
    q = counts^0.75 normalised, independent of the module. Mutant caught: the log(K·q)
    correction removed (the layer would be negative sampling)."""
    layer = make_output_layer("nce", COUNTS, negative=4)
    params = {k: np.asarray(v, np.float64) for k, v in make_params(layer).items()}
    batch = make_batch(layer)
    key = jax.random.key(2)
    noise = np.asarray(layer.sample_noise(key, B))
    q = COUNTS ** 0.75 / np.sum(COUNTS ** 0.75)
    ref = 0.0
    for b in range(B):
        h = params["w_in"][int(batch["input"][b])]
        delta = lambda w: params["w_out"][w] @ h - np.log(4 * q[w])
        loss = -_log_sigmoid(delta(int(batch["output"][b])))
        loss -= sum(_log_sigmoid(-delta(int(n))) for n in noise[b])
        ref += float(batch["mask"][b]) * loss
    _, aux = layer.loss({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, batch, key)
    np.testing.assert_allclose(float(aux["sum"]), ref, rtol=1e-5)


def test_sampled_softmax_equals_its_numpy_formula():
    """Sampled softmax (Jean et al. 2015): logits u_w·h − log(S·q(w)) for the target and the S
    shared samples, a sample equal to the target removed, loss = logsumexp − target logit.
    Mutants caught: the sign of the target's correction flipped, accidental hits kept."""
    s_count = 9
    layer = make_output_layer("sampled", COUNTS, shared_samples=s_count)
    params = {k: np.asarray(v, np.float64) for k, v in make_params(layer).items()}
    batch = make_batch(layer)
    key = jax.random.key(3)
    samples = np.asarray(layer.sample_noise(key, B))
    q = COUNTS ** 0.75 / np.sum(COUNTS ** 0.75)
    corr = lambda w: np.log(s_count * q[w])
    ref = 0.0
    hits = 0
    for b in range(B):
        h = params["w_in"][int(batch["input"][b])]
        c = int(batch["output"][b])
        target = params["w_out"][c] @ h - corr(c)
        others = [params["w_out"][s] @ h - corr(s) for s in samples if s != c]
        hits += int(np.sum(samples == c))
        ref += float(batch["mask"][b]) * (np.logaddexp.reduce([target] + others) - target)
    _, aux = layer.loss({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, batch, key)
    np.testing.assert_allclose(float(aux["sum"]), ref, rtol=1e-5)
    assert hits > 0  # the accidental-hit rule was exercised


def test_blackout_equals_its_numpy_formula():
    """BlackOut (Ji et al. 2016): over the target and the S shared samples, weighted softmax
    p̃(i) ∝ exp(u_i·h) / q(i); loss −log p̃(c) − Σ_s log(1 − p̃(s)), a sample equal to the target
    removed. Mutants caught: the 1/q weights dropped, the sample term's sign flipped, accidental
    hits kept."""
    s_count = 9
    layer = make_output_layer("blackout", COUNTS, shared_samples=s_count)
    params = {k: np.asarray(v, np.float64) for k, v in make_params(layer).items()}
    batch = make_batch(layer)
    key = jax.random.key(3)
    samples = np.asarray(layer.sample_noise(key, B))
    q = COUNTS ** 0.75 / np.sum(COUNTS ** 0.75)
    ref, hits = 0.0, 0
    for b in range(B):
        h = params["w_in"][int(batch["input"][b])]
        c = int(batch["output"][b])
        kept = [s for s in samples if s != c]
        hits += len(samples) - len(kept)
        scores = np.array([params["w_out"][w] @ h - np.log(q[w]) for w in [c] + kept])
        p = np.exp(scores - np.logaddexp.reduce(scores))
        ref += float(batch["mask"][b]) * (-np.log(p[0]) - np.sum(np.log1p(-p[1:])))
    _, aux = layer.loss({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, batch, key)
    np.testing.assert_allclose(float(aux["sum"]), ref, rtol=1e-5)
    assert hits > 0


# --- gradients ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", VARIANTS, ids=IDS)
def test_gradients_match_finite_differences(name, kw):
    jax.config.update("jax_enable_x64", True)
    try:
        layer = make_output_layer(name, COUNTS, **{**small_blocks(name, 7), **kw})
        params = make_params(layer, jnp.float64)
        batch = make_batch(layer)
        key = jax.random.key(3)
        f = jax.jit(lambda p: layer.loss(p, batch, key)[0])  # jitted: 7 calls, one compilation
        grads = jax.jit(jax.grad(f))(params)
        # CBOW's w_in backward pass is word2vec's update, not the gradient (base.cbow_mean;
        # tested against a transcription of word2vec.c in test_train): check the layer's own.
        checked = [k for k in params if k != "w_in" or not kw.get("cbow")]
        rng = np.random.default_rng(5)
        for _ in range(3):
            direction = {k: jnp.asarray(rng.normal(size=v.shape) if k in checked else np.zeros(v.shape))
                         for k, v in params.items()}
            eps = 1e-6
            plus = f({k: params[k] + eps * direction[k] for k in params})
            minus = f({k: params[k] - eps * direction[k] for k in params})
            fd = (plus - minus) / (2 * eps)
            analytic = sum(jnp.vdot(grads[k], direction[k]) for k in params)
            np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-8)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("name, kw", VARIANTS, ids=IDS)
def test_declared_leaves_are_the_leaves_the_loss_reads(name, kw):
    """Every leaf a layer declares is read, by row ids exactly where it says ``row_indexed``
    (whole otherwise), and the loss reads no other leaf."""
    layer = make_output_layer(name, COUNTS, **kw)
    specs = param_specs(layer, V, D)
    noise = layer.sample_noise(jax.random.key(0), B)
    read = {}
    for look in layer.lookups(make_batch(layer), noise).values():
        read.setdefault(look.table, set()).add(look.ids is not None)
    assert set(read) == set(specs), (set(read), set(specs))
    for leaf, by_rows in read.items():
        assert by_rows == {specs[leaf].row_indexed}, (leaf, by_rows)


@pytest.mark.parametrize("name, kw", VARIANTS, ids=IDS)
def test_loss_is_jittable_vmappable_and_compiles_once(name, kw):
    layer = make_output_layer(name, COUNTS, **{**small_blocks(name, 16), **kw})
    traces = []

    def f(p, batch, key):
        traces.append(1)
        return layer.loss(p, batch, key)

    jitted = jax.jit(f)
    a = jitted(make_params(layer), make_batch(layer, 1), jax.random.key(0))[0]
    b = jitted(make_params(layer, seed=4), make_batch(layer, 2), jax.random.key(1))[0]
    assert len(traces) == 1 and np.isfinite(a) and np.isfinite(b)
    keys = jax.random.split(jax.random.key(0), 3)
    many = jax.vmap(lambda k: layer.loss(make_params(layer), make_batch(layer), k)[0])(keys)
    assert many.shape == (3,) and np.all(np.isfinite(many))


# --- the sampler -------------------------------------------------------------------------

@pytest.mark.slow  # statistics over many draws / a training run
def test_sampler_matches_unigram_075():
    counts = np.random.default_rng(0).integers(1, 5000, 1000)
    p = noise_distribution(counts, 0.75)
    sampler = AliasSampler.from_probs(p)
    np.testing.assert_allclose(sampler.probabilities()[:1000], p, atol=1e-9)
    n = 10**6
    draws = np.asarray(sampler.sample(jax.random.key(0), (n,)))
    freq = np.bincount(draws, minlength=1000) / n
    assert draws.max() < 1000
    # Every word within 5.5 standard errors (the max of 1000 z-scores exceeds 4.5 rarely).
    z = np.abs(freq - p) / np.sqrt(p * (1 - p) / n)
    assert z.max() < 5.5
    # And the chi-square statistic within 5 sigma of its mean (dof = 999).
    chi2 = np.sum((freq - p) ** 2 / p) * n
    assert abs(chi2 - 999) < 5 * np.sqrt(2 * 999)
    a = np.asarray(sampler.sample(jax.random.key(7), (1000,)))
    b = np.asarray(sampler.sample(jax.random.key(7), (1000,)))
    c = np.asarray(sampler.sample(jax.random.key(8), (1000,)))
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.5


def test_sampler_small_vocabularies():
    for probs in ([1.0], [0.25, 0.75], [0.0, 1.0, 0.0]):
        s = AliasSampler.from_probs(np.array(probs))
        d = np.asarray(s.sample(jax.random.key(0), (20000,)))
        np.testing.assert_allclose(np.bincount(d, minlength=len(probs)) / 20000, probs, atol=0.02)


# --- the theory, as tests ----------------------------------------------------------------

def _cos(a, b):
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


@pytest.mark.slow  # statistics over many draws / a training run
def test_sampled_gradients_approach_full_softmax_direction():
    """Tiny problem, centred output vectors: the gradient w.r.t. v_w of sampled softmax (one
    draw) and of NS (mean over draws) point along the exact full-softmax gradient."""
    v, d = 20, 5
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 100, v)
    w_out = rng.normal(size=(v, d)) * 0.5
    params = {"w_in": jnp.asarray(rng.normal(size=(v, d)) * 0.3, jnp.float32),
              "w_out": jnp.asarray(w_out - w_out.mean(0), jnp.float32)}
    batch = {"input": jnp.array([3]), "output": jnp.array([7]), "mask": jnp.ones(1)}

    def grad_v(layer, key):  # jitted: one compilation, not one per operation
        return jax.jit(lambda k: jax.grad(lambda p: layer.loss(p, batch, k)[0])(params)["w_in"][3])(key)

    exact = grad_v(make_output_layer("full", counts), None)
    key = jax.random.key(1)
    cos_by_s = [_cos(grad_v(make_output_layer("sampled", counts, shared_samples=s), key), exact)
                for s in (2, 50, 1000)]
    assert cos_by_s[-1] > 0.99 and cos_by_s[-1] >= cos_by_s[0] - 1e-6, cos_by_s
    keys = jax.random.split(jax.random.key(2), 300)
    for k in (5, 15):
        layer = make_output_layer("ns", counts, negative=k, negative_mode="pair")
        mean_grad = jnp.mean(jax.jit(jax.vmap(lambda kk: jax.grad(
            lambda p: layer.loss(p, batch, kk)[0])(params)["w_in"][3]))(keys), 0)
        assert _cos(mean_grad, exact) > 0.9


@pytest.mark.slow  # statistics over many draws / a training run
def test_sgns_factorises_shifted_pmi():
    """Levy & Goldberg 2014: at convergence with D >= V, u_c·v_w = PMI(w, c) − log K — slope 1
    and intercept −log K, not just a correlation. word2vec skips a negative equal to the
    target, which moves each optimum by −log(1 − p(c | w)); that term is removed first.
    Mutant caught: the noise term averaged over the K negatives instead of summed (intercept 0),
    and the noise drawn from counts^0.75 while the layer claims ns_exponent 1 (slope ≠ 1).
    Tolerances: 6 standard errors of the fitted coefficients plus 0.005 for convergence."""
    v, k = 8, 5
    rng = np.random.default_rng(0)
    transition = rng.dirichlet(np.full(v, 0.5), size=v)
    ids = [0]
    for _ in range(20000):
        ids.append(rng.choice(v, p=transition[ids[-1]]))
    ids = np.array(ids, np.int32)
    w, c, _ = skipgram_pairs(ids, np.zeros(ids.size, int), np.full(ids.size, 2), 2)
    pair_counts = np.zeros((v, v))
    np.add.at(pair_counts, (w, c), 1)
    counts = np.bincount(ids, minlength=v)
    layer = make_output_layer("ns", counts, negative=k, ns_exponent=1.0, negative_mode="pair")
    ww, cc = np.nonzero(pair_counts)
    # One example per distinct pair, weighted by its count: the whole corpus in one batch.
    batch = {"input": jnp.asarray(ww, jnp.int32), "output": jnp.asarray(cc, jnp.int32),
             "mask": jnp.asarray(pair_counts[ww, cc], jnp.float32)}
    params = {"w_in": jnp.asarray(rng.normal(size=(v, v)) * 0.1, jnp.float32),
              "w_out": jnp.asarray(rng.normal(size=(v, v)) * 0.1, jnp.float32)}
    opt = optax.adam(optax.cosine_decay_schedule(0.05, 3000))
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        keys = jax.random.split(key, 16)
        loss = lambda p: jnp.mean(jax.vmap(lambda kk: layer.loss(p, batch, kk)[0])(keys))
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    for i in range(3000):
        params, state = step(params, state, jax.random.fold_in(jax.random.key(0), i))
    dots = np.asarray(params["w_in"] @ params["w_out"].T)
    q = counts / counts.sum()
    cond = pair_counts / pair_counts.sum(1, keepdims=True)
    seen = pair_counts > 0
    pmi = np.log(cond[seen] / np.broadcast_to(q[None, :], cond.shape)[seen])
    y = dots[seen] + np.log1p(-cond[seen])  # remove the skipped-negative term
    a = np.stack([pmi, np.ones_like(pmi)], 1)
    (slope, intercept), *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ np.array([slope, intercept])
    se_slope, se_intercept = np.sqrt(np.diag(resid @ resid / (len(y) - 2) * np.linalg.inv(a.T @ a)))
    assert abs(slope - 1) < 6 * se_slope + 0.005, (slope, se_slope)
    assert abs(intercept + np.log(k)) < 6 * se_intercept + 0.005, (intercept, se_intercept)


@pytest.mark.slow  # statistics over many draws / a training run
def test_negative_modes_agree_in_expectation():
    """Mean gradient over many keys: window-shared and batch-shared equal per-pair NS."""
    rng = np.random.default_rng(3)
    windows = {"centre": jnp.asarray(rng.integers(0, V, B), jnp.int32),
               "context": jnp.asarray(rng.integers(0, V, (B, 4)), jnp.int32),
               "mask": jnp.asarray(rng.random((B, 4)) < 0.7, jnp.float32)}
    # The same pairs in word2vec's orientation: input = context, target = centre.
    pairs = {"input": windows["context"].reshape(-1),
             "output": jnp.repeat(windows["centre"], 4),
             "mask": windows["mask"].reshape(-1)}
    params = make_params(FullSoftmax())
    keys = jax.random.split(jax.random.key(0), 4000)

    def mean_grad(layer, batch):
        # Sum-of-losses gradients (the per-pair update), averaged over keys.
        g = jax.jit(jax.vmap(lambda k: jax.grad(lambda p: layer.loss(p, batch, k)[1]["sum"])(params)))(keys)
        return {k: v.mean(0) for k, v in g.items()}, {k: v.std(0) / np.sqrt(len(keys)) for k, v in g.items()}

    ref, ref_se = mean_grad(make_output_layer("ns", COUNTS, negative=5, negative_mode="pair"), pairs)
    for mode, batch in (("window", windows), ("batch", pairs)):
        got, se = mean_grad(make_output_layer("ns", COUNTS, negative=5, negative_mode=mode,
                                              shared_samples=8), batch)
        for name in ("w_in", "w_out"):
            diff = np.abs(got[name] - ref[name])
            bound = 5 * np.sqrt(se[name] ** 2 + ref_se[name] ** 2) + 1e-4
            assert np.all(diff <= bound), (mode, name, float((diff - bound).max()))


def test_window_hs_equals_hs_over_the_same_pairs():
    """Window-shared HS (a centre's path gathered once for all its contexts) is the pairs
    layout's HS regrouped: the same per-pair losses, and one SGD step on a batch of windows
    equals one step on the same pairs. Mutants caught: the path of a context instead of the
    centre; a context's mask ignored; node gradients not summed over the contexts."""
    from sgns_jax.engine.step import init_state, train_step
    from sgns_jax.engine.updates import make_update_rule

    pairs_layer = make_output_layer("hs", COUNTS, hs_paths="pair")
    window_layer = make_output_layer("hs", COUNTS)
    assert window_layer.layout == "windows" and pairs_layer.layout == "pairs"
    params = make_params(pairs_layer)
    windows = make_batch(window_layer)
    rows_m = np.asarray(windows["mask"]).astype(bool)
    pairs = {"input": jnp.asarray(np.asarray(windows["context"])[rows_m]),
             "output": jnp.asarray(np.repeat(np.asarray(windows["centre"]), 4).reshape(B, 4)[rows_m]),
             "mask": jnp.ones(int(rows_m.sum()), jnp.float32)}
    lk = window_layer.lookups(windows, None)
    losses_BxC, weights_BxC = window_layer.example_losses(
        {"input": params["w_in"][lk["input"].ids], "nodes": params["w_out"][lk["nodes"].ids]}, lk, windows)
    lp = pairs_layer.lookups(pairs, None)
    losses_P, _ = pairs_layer.example_losses(
        {"input": params["w_in"][lp["input"].ids], "nodes": params["w_out"][lp["nodes"].ids]}, lp, pairs)
    np.testing.assert_allclose(np.asarray(losses_BxC)[rows_m], losses_P, rtol=1e-5)
    np.testing.assert_array_equal(weights_BxC, windows["mask"])
    rule = make_update_rule("sgd", "sparse")
    stepped = [jitted_train_step(init_state(params, rule), batch, jax.random.key(0), jnp.float32(0.1),
                          layer=layer, rule=rule)[0].params
               for layer, batch in ((window_layer, windows), (pairs_layer, pairs))]
    for name in ("w_in", "w_out"):
        np.testing.assert_allclose(stepped[0][name], stepped[1][name], rtol=1e-5, atol=1e-6)


# --- bfloat16 matrix products ---------------------------------------------------------------

GEMM_VARIANTS = [("full", {}), ("full", {"softmax_block": 16}), ("sampled", {"shared_samples": 9}),
                 ("blackout", {"shared_samples": 9}),
                 ("ns", {"negative_mode": "batch", "shared_samples": 7})]


@pytest.mark.parametrize("name,kw", GEMM_VARIANTS, ids=[f"{n}-{kw}" for n, kw in GEMM_VARIANTS])
def test_bfloat16_products_stay_close_to_float32(name, kw):
    """matmul_dtype bfloat16 rounds the products' operands (8 bits of mantissa) and accumulates
    in float32: loss and gradients within bfloat16's rounding of the float32 ones, every
    gradient still float32, and the compiled products really take bfloat16 operands."""
    f32 = make_output_layer(name, COUNTS, **kw)
    bf16 = make_output_layer(name, COUNTS, matmul_dtype="bfloat16", **kw)
    params, batch, key = make_params(f32), make_batch(f32), jax.random.key(3)

    def value_and_grads(layer):
        return jax.value_and_grad(lambda p: layer.loss(p, batch, key)[0])(params)

    (l32, g32), (l16, g16) = value_and_grads(f32), value_and_grads(bf16)
    assert float(l16) != float(l32)  # the option changes the arithmetic...
    np.testing.assert_allclose(float(l16), float(l32), rtol=2e-2)  # ...within bf16's rounding
    for table in params:
        assert g16[table].dtype == jnp.float32
        scale = float(jnp.abs(g32[table]).max())
        np.testing.assert_allclose(np.asarray(g16[table]), np.asarray(g32[table]), atol=1e-2 * scale)
    # every matrix product of the loss and of its gradient takes bfloat16 operands
    hlo = jax.jit(jax.grad(lambda p: bf16.loss(p, batch, key)[0])).lower(params).as_text()
    dots = [line for line in hlo.splitlines() if "stablehlo.dot_general" in line]
    assert len(dots) >= 3, hlo
    for line in dots:
        operands = line.rsplit(": (", 1)[1].split(") ->")[0]
        assert operands.count("bf16") == 2 and "f32>" in line.rsplit("->", 1)[1], line


@pytest.mark.parametrize("name,kw", [("hs", {}), ("nce", {}), ("ns", {}), ("ns", {"negative_mode": "pair"})])
def test_bfloat16_is_refused_where_there_is_no_matrix_product(name, kw):
    from sgns_jax.errors import ConfigError

    with pytest.raises(ConfigError, match="matmul_dtype"):
        make_output_layer(name, COUNTS, matmul_dtype="bfloat16", **kw)
    with pytest.raises(ConfigError, match="unknown matmul_dtype"):
        make_output_layer("full", COUNTS, matmul_dtype="float16")
