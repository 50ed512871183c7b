"""Output layers (softmax approximations) as pure losses, each registered by name.

    layer = make_output_layer("ns", counts, negative=5)
    mean_loss, aux = layer.loss(params, batch, key)   # params = {"w_in": [V, D], **the layer's leaves}

Every module of this package that defines a layer registers it (``registry.register``); the
names, options, defaults and test variants are read from the registry (:func:`specs`).
"""

from __future__ import annotations

from sgns_jax.losses.base import (Lookup, OutputLayer, OutputTableLayer, ParamSpec, gather_rows,
                                  log_sigmoid)
from sgns_jax.losses.full_softmax import FullSoftmax
from sgns_jax.losses.hierarchical_softmax import HierarchicalSoftmax
from sgns_jax.losses.huffman import huffman_codes
from sgns_jax.losses.registry import (LossOptions, LossSpec, check_options, loss_spec,
                                      make_output_layer, registered_variants, resolve_options, specs)
from sgns_jax.losses.sampler import AliasSampler

__all__ = ["AliasSampler", "FullSoftmax", "HierarchicalSoftmax", "Lookup", "LossOptions",
           "LossSpec", "OutputLayer", "OutputTableLayer", "ParamSpec", "check_options", "gather_rows", "huffman_codes",
           "log_sigmoid", "loss_spec", "make_output_layer", "registered_variants",
           "resolve_options", "specs"]
