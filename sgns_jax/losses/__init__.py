"""Output layers (softmax approximations) as pure losses, and a registry to pick one by name.

    layer = make_output_layer("ns", counts, negatives=5)
    mean_loss, aux = layer.loss(params, batch, key)   # params = {"w_in": [V, D], "w_out": [·, D]}
"""

from __future__ import annotations

import numpy as np

from sgns_jax.data.vocab import noise_distribution
from sgns_jax.errors import ConfigError
from sgns_jax.losses.base import Lookup, OutputLayer, gather_rows, log_sigmoid
from sgns_jax.losses.full_softmax import FullSoftmax
from sgns_jax.losses.hierarchical_softmax import HierarchicalSoftmax
from sgns_jax.losses.huffman import huffman_codes
from sgns_jax.losses.nce import NoiseContrastiveEstimation
from sgns_jax.losses.negative_sampling import NegativeSampling
from sgns_jax.losses.sampled_softmax import SampledSoftmax
from sgns_jax.losses.sampler import AliasSampler

LOSSES = ("full", "hs", "ns", "nce", "sampled")
NEGATIVE_MODES = ("pair", "window", "batch")


def make_output_layer(
    name: str,
    counts: np.ndarray,
    *,
    negatives: int = 5,
    negative_mode: str = "pair",
    shared_samples: int = 64,
    ns_exponent: float = 0.75,
    cbow: bool = False,
    softmax_chunk: int = 32768,
    remove_accidental_hits: bool = True,
) -> OutputLayer:
    """Build the output layer ``name`` ∈ LOSSES for a vocabulary with these counts.

    ``negatives`` is K for ns/nce; ``shared_samples`` is S for ns with ``negative_mode='batch'``
    and for sampled softmax; ``ns_exponent`` shapes the noise distribution counts^power.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if name in ("ns", "nce") and negatives < 1:
        raise ConfigError(f"negative must be >= 1 for loss {name!r}, got {negatives}")
    if negative_mode not in NEGATIVE_MODES:
        raise ConfigError(f"unknown negative mode {negative_mode!r}; choose one of "
                          f"{', '.join(NEGATIVE_MODES)}")
    if name == "ns" and negative_mode == "window" and cbow:
        raise ConfigError("negative mode 'window' is for skip-gram; CBOW takes 'pair' or 'batch'")
    if shared_samples < 1:
        raise ConfigError(f"shared_samples must be >= 1, got {shared_samples}")
    if name == "full":
        return FullSoftmax(chunk=softmax_chunk, cbow=cbow)
    if name == "hs":
        return HierarchicalSoftmax(np.asarray(counts), cbow=cbow)
    sampler = AliasSampler.from_probs(noise_distribution(counts, ns_exponent))
    if name == "ns":
        return NegativeSampling(sampler, negatives, negative_mode, shared_samples, cbow=cbow)
    if name == "nce":
        return NoiseContrastiveEstimation(sampler, negatives, cbow=cbow)
    return SampledSoftmax(sampler, shared_samples, remove_accidental_hits, cbow=cbow)


__all__ = ["LOSSES", "AliasSampler", "FullSoftmax", "HierarchicalSoftmax", "Lookup",
           "NegativeSampling", "NoiseContrastiveEstimation", "OutputLayer", "SampledSoftmax",
           "gather_rows", "huffman_codes", "log_sigmoid", "make_output_layer"]
