"""Adaptive softmax (Grave, Joulin, Cissé, Grangier & Jégou 2017, "Efficient softmax
approximation for GPUs"): an exact, normalised softmax factorised by word frequency.

Words are sorted by frequency (ids are ranks). With ``cutoffs`` c_0 < c_1 < … < c_{n−1} (and
c_n = V), the **head** is a softmax over the c_0 most frequent words plus one logit per tail
cluster; **tail cluster** i holds the words [c_i, c_{i+1}) and is a softmax of its own over a
projected input: h is projected to d_i = max(1, ⌊D / div_value^(i+1)⌋) dimensions before the
cluster's output table. So

    p(w | h) = p_head(w | h)                               if w < c_0
    p(w | h) = p_head(cluster i | h) · p_i(w | h·P_i)      if c_i ≤ w < c_{i+1}

which sums to one over the vocabulary by construction. The options have the semantics of
``torch.nn.AdaptiveLogSoftmaxWithLoss(in_features=D, n_classes=V, cutoffs, div_value,
head_bias=False)``: its ``head`` is our ``head`` [c_0 + n, D] (row c_0 + i: cluster i), its
``tail[i]`` the two bias-free linear maps ``tail{i}_proj`` [D, d_i] and ``tail{i}_out``
[c_{i+1} − c_i, d_i]. Two departures, both where torch would not train: d_i is at least 1
(torch would build a 0-wide projection), and ``cutoffs = ()`` is allowed — the head alone,
over every word, which *is* the full softmax.

Default cutoffs (``cutoffs`` None): the frequency ranks that cover 80% and 95% of the training
tokens, so the head holds the words most pairs predict and the rarest ~5% of tokens fall in the
narrowest cluster (on ``mid.txt.gz``: 1,428 / 5,755 at V = 10k, 2,563 / 14,429 at V = 40k; the
rule against its alternatives at equal words: docs/bench_output_layers.md).

Every example is scored exactly, and, as Grave et al. do, a tail cluster's softmax is computed
only for the examples whose target is in it: with static shapes, up to a fixed number of them
(the cluster's ``capacity``: twice its expected share of a step's examples, plus 16), gathered
to the front; a step with more falls back to the whole batch, masked (``lax.cond``: exact
either way). On the 2-core CPU a softmax's cost is its exponentials as much as its products, so
evaluating every cluster for every example left adaptive softmax barely faster than the full
one (docs/performance_notes.md). A step's gradient is zero on the clusters no target falls in,
so SGD changes only the head, the clusters present in the batch and the input rows it read
(tested). The tables are read whole: updates are dense over these small leaves; ``w_in`` stays
sparse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.errors import ConfigError
from sgns_jax.losses.base import Array, Batch, Lookup, OutputLayer, ParamSpec, matmul
from sgns_jax.losses.full_softmax import exact_nll
from sgns_jax.losses.registry import MatmulOptions, option, register

DEFAULT_COVERAGE = (0.8, 0.95)


def coverage_cutoffs(counts: np.ndarray, coverage: tuple[float, ...] = DEFAULT_COVERAGE
                     ) -> tuple[int, ...]:
    """The ranks at which the most frequent words cover each fraction of the tokens (counts
    sorted descending), kept strictly increasing and inside (0, V)."""
    counts = np.asarray(counts, np.float64)
    cum = np.cumsum(counts) / max(counts.sum(), 1.0)
    cuts: list[int] = []
    for f in coverage:
        c = int(np.searchsorted(cum, f)) + 1
        if 0 < c < counts.size and (not cuts or c > cuts[-1]):
            cuts.append(c)
    return tuple(cuts)


def tail_dims(dim: int, clusters: int, div_value: float) -> tuple[int, ...]:
    """d_i = max(1, ⌊D / div_value^(i+1)⌋), torch's ``in_features // div_value ** (i + 1)``."""
    return tuple(max(1, int(dim // (div_value ** (i + 1)))) for i in range(clusters))


@dataclass(frozen=True, eq=False)
class AdaptiveSoftmax(OutputLayer):
    cutoffs: tuple[int, ...]      # c_0 < … < c_{n−1}, inside (0, V)
    vocab_size: int
    div_value: float = 4.0
    shares: tuple[float, ...] = ()  # expected share of the targets in each tail (capacity)
    block: int = 32768            # rows per block of a softmax's normaliser (full_softmax.exact_nll)
    cbow: bool = False
    matmul_dtype: str = "float32"
    normalised = True

    def __post_init__(self) -> None:
        c = self.cutoffs
        if any(b <= a for a, b in zip(c, c[1:])) or (c and (c[0] < 1 or c[-1] >= self.vocab_size)):
            raise ConfigError(f"adaptive softmax cutoffs must increase strictly inside (0, V = "
                              f"{self.vocab_size}), got {list(c)}")

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """[c_i, c_{i+1}) of each tail cluster."""
        edges = [*self.cutoffs, self.vocab_size]
        return list(zip(edges[:-1], edges[1:]))

    def describe(self) -> str:
        return f"adaptive softmax (cutoffs {list(self.cutoffs)}, div_value {self.div_value:g})"

    def param_specs(self, vocab_size: int, dim: int) -> dict[str, ParamSpec]:
        head = self.cutoffs[0] if self.cutoffs else vocab_size
        specs = {"head": ParamSpec((head + len(self.cutoffs), dim), row_indexed=False)}
        for i, ((lo, hi), d) in enumerate(zip(self.bounds, tail_dims(dim, len(self.cutoffs), self.div_value))):
            # torch.nn.Linear's initial range for the projection (a zero projection and a zero
            # table would have no gradient); the output table starts at zero, as every layer's.
            specs[f"tail{i}_proj"] = ParamSpec((dim, d), "uniform", 1 / np.sqrt(dim), row_indexed=False)
            specs[f"tail{i}_out"] = ParamSpec((hi - lo, d), row_indexed=False)
        return specs

    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        leaves = ["head"] + [f"tail{i}_{k}" for i in range(len(self.cutoffs)) for k in ("proj", "out")]
        return {"input": self.input_lookup(batch), **{leaf: Lookup(leaf, None) for leaf in leaves}}

    def _cluster(self, target_B: Array) -> Array:
        """−1 for a head word, i for a word of tail cluster i."""
        # compare_all: a handful of cutoffs, no loop (the default method scans, which XLA's
        # cost analysis would count once)
        return jnp.searchsorted(jnp.asarray(self.cutoffs, jnp.int32), target_B, side="right",
                                method="compare_all") - 1

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        if not self.cutoffs:
            return exact_nll(h_BxD, rows["head"], target_B, self.block, self.matmul_dtype), weight_B
        cluster_B = self._cluster(target_B)
        head_target_B = jnp.where(cluster_B < 0, target_B, self.cutoffs[0] + cluster_B)
        nll_B = exact_nll(h_BxD, rows["head"], head_target_B, self.block, self.matmul_dtype)
        for i, (lo, hi) in enumerate(self.bounds):
            nll_B = nll_B + self._tail_nll(i, lo, hi, h_BxD, target_B, cluster_B == i, rows)
        return nll_B, weight_B

    def capacity(self, i: int, batch: int) -> int:
        share = self.shares[i] if i < len(self.shares) else 1.0
        return min(batch, int(2 * share * batch) + 16)

    def _tail_nll(self, i, lo, hi, h_BxD, target_B, member_B, rows) -> Array:
        """−log p_i(target | h) for the members of cluster i, 0 for the other examples [B]."""
        proj, table = rows[f"tail{i}_proj"], rows[f"tail{i}_out"]

        def nll(h_NxD, target_N):
            p_NxDi = matmul(h_NxD, proj, self.matmul_dtype)
            return exact_nll(p_NxDi, table, jnp.clip(target_N - lo, 0, hi - lo - 1), self.block,
                             self.matmul_dtype)

        def whole_batch(_):
            return jnp.where(member_B, nll(h_BxD, target_B), 0.0)

        b = target_B.shape[0]
        capacity = self.capacity(i, b)
        if capacity >= b:
            return whole_batch(None)

        def members_only(_):
            # the members first (stable), then as many others as fill the capacity, masked
            pick_C = jnp.argsort(~member_B, stable=True)[:capacity]
            nll_C = jnp.where(member_B[pick_C], nll(h_BxD[pick_C], target_B[pick_C]), 0.0)
            return jnp.zeros(b, nll_C.dtype).at[pick_C].add(nll_C)

        return jax.lax.cond(member_B.sum() <= capacity, members_only, whole_batch, None)

    def log_probs(self, params: Mapping[str, Array], h_BxD: Array) -> Array:
        """log p(w | h) for every word [B, V] (tests and evaluation)."""
        head_BxH = jax.nn.log_softmax(h_BxD @ params["head"].T, axis=-1)
        c0 = self.cutoffs[0] if self.cutoffs else self.vocab_size
        parts = [head_BxH[:, :c0]]
        for i in range(len(self.cutoffs)):
            p_BxDi = h_BxD @ params[f"tail{i}_proj"]
            parts.append(head_BxH[:, c0 + i:c0 + i + 1]
                         + jax.nn.log_softmax(p_BxDi @ params[f"tail{i}_out"].T, axis=-1))
        return jnp.concatenate(parts, axis=-1)


@register
@dataclass(frozen=True)
class AdaptiveSoftmaxOptions(MatmulOptions):
    name: str = "adaptive"
    cutoffs: tuple[int, ...] | None = option(
        None, "frequency ranks where the head and each tail cluster end (default: the ranks "
              "covering 80% and 95% of the tokens)")
    div_value: float = option(4.0, "tail cluster i projects to D / div_value^(i+1) dimensions")
    softmax_block: int = option(32768, "vocabulary rows per block of the normaliser")

    summary: ClassVar[str] = ("adaptive softmax (Grave et al. 2017): a frequent-word head and "
                              "narrower tail clusters, exact")
    test_variants: ClassVar[tuple[dict, ...]] = (
        {}, {"cutoffs": (2, 5), "softmax_block": 3}, {"cutoffs": (4,), "div_value": 1.0},
        {"cbow": True})

    def check(self, cbow: bool) -> None:
        super().check(cbow)
        if self.div_value <= 0:
            raise ConfigError(f"div_value must be > 0, got {self.div_value}")
        c = self.cutoffs or ()
        if any(b <= a for a, b in zip(c, c[1:])) or any(x < 1 for x in c):
            raise ConfigError(f"cutoffs must be positive and strictly increasing, got {list(c)}")

    def batch_size(self, cbow: bool, backend: str = "cpu") -> int:
        # Its tables are updated densely, as the full softmax's: 256 rows a step stay stable.
        return 256

    def build(self, counts: np.ndarray, cbow: bool) -> AdaptiveSoftmax:
        cutoffs = coverage_cutoffs(counts) if self.cutoffs is None else tuple(self.cutoffs)
        edges = [*cutoffs, len(counts)]
        total = max(float(np.sum(counts)), 1.0)
        shares = tuple(float(np.sum(counts[a:b])) / total for a, b in zip(edges[:-1], edges[1:]))
        return AdaptiveSoftmax(cutoffs, len(counts), self.div_value, shares, self.softmax_block,
                               cbow=cbow, matmul_dtype=self.matmul_dtype)
