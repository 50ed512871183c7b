"""Output layers (softmax approximations) as pure losses, each registered by name.

    layer = make_output_layer("ns", counts, negative=5)
    mean_loss, aux = layer.loss(params, batch, key)   # params = {"w_in": [V, D], **the layer's leaves}

Every module of this package that defines a layer registers its options class
(``registry.register``); the names, options, defaults and test variants are read from the
registry (:func:`specs`).
"""

from __future__ import annotations

from sgns_jax.losses.base import (Lookup, OutputLayer, OutputTableLayer, ParamSpec, gather_rows,
                                  log_sigmoid)
from sgns_jax.losses.full_softmax import FullSoftmax
from sgns_jax.losses.hierarchical_softmax import HierarchicalSoftmax
from sgns_jax.losses.huffman import huffman_codes
from sgns_jax.losses.registry import (DEFAULT_LOSS, LossOptions, build_layer, check_options,
                                      loss_options, loss_spec, make_output_layer, option_fields,
                                      registered_variants, replace_options, specs)
from sgns_jax.losses.sampler import AliasSampler

__all__ = ["DEFAULT_LOSS", "AliasSampler", "FullSoftmax", "HierarchicalSoftmax", "Lookup",
           "LossOptions", "OutputLayer", "OutputTableLayer", "ParamSpec", "build_layer",
           "check_options", "gather_rows", "huffman_codes", "log_sigmoid", "loss_options",
           "loss_spec", "make_output_layer", "option_fields", "registered_variants",
           "replace_options", "specs"]
