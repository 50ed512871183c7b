"""Checkpoints: the whole training state in one ``.npz``, written atomically.

Saved: the parameter leaves (``param/<name>``: ``w_in`` and the output layer's), optimizer state leaves, the global step, the position in the data (epoch
and chunks done in it), the running loss accumulators and the config. Because batches and keys
are pure functions of (seed, epoch, step), that is enough to continue bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sgns_jax.errors import SgnsError
from sgns_jax.io_utils import atomic_open
from sgns_jax.train.step import TrainState

CHECKPOINT_NAME = "checkpoint.npz"


@dataclass
class Progress:
    """Where the run is: epoch, chunks finished in it, words read, loss accumulators."""

    epoch: int = 0
    chunk: int = 0
    words: int = 0
    loss_sum: float = 0.0   # float64 on the host: never saturates (gensim's float32 does)
    loss_count: float = 0.0  # examples in the loss-reporting steps (each chunk's first)
    examples: int = 0        # unpadded examples trained on


def checkpoint_path(directory: str | Path) -> Path:
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: str | Path, state: TrainState, progress: Progress,
                    config: dict[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from sgns_jax.train.parallel import fetch

    leaves = jax.tree.leaves(state.opt_state)
    arrays = {f"param/{k}": fetch(v) for k, v in state.params.items()}
    arrays["step"] = fetch(state.step)
    arrays.update({f"opt_{i}": fetch(x) for i, x in enumerate(leaves)})
    meta = {"progress": progress.__dict__, "config": config, "opt_leaves": len(leaves)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = checkpoint_path(directory)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _saved_params(z) -> dict[str, np.ndarray]:
    """The parameter leaves of an open checkpoint: ``param/<name>`` entries, or — written before
    layers declared their own leaves — every entry that is not the step, metadata or optimizer
    state (the two tables, under their leaf names)."""
    names = [k for k in z.files if k.startswith("param/")]
    if names:
        return {k[len("param/"):]: z[k] for k in names}
    return {k: z[k] for k in z.files if k not in ("step", "meta") and not k.startswith("opt_")}


def load_checkpoint(directory: str | Path, template: TrainState) -> tuple[TrainState, Progress, dict]:
    """Restore into the structure of ``template`` (a freshly initialised state)."""
    path = checkpoint_path(directory)
    if not path.exists():
        raise SgnsError(f"no checkpoint to resume from in {directory}")
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        treedef = jax.tree.structure(template.opt_state)
        leaves = [z[f"opt_{i}"] for i in range(meta["opt_leaves"])]
        if len(leaves) != treedef.num_leaves:
            raise SgnsError(f"checkpoint {path} does not match this configuration's optimizer")
        params = _saved_params(z)
        if set(params) != set(template.params):
            raise SgnsError(f"checkpoint {path} holds parameters {sorted(params)}, this run's "
                            f"output layer has {sorted(template.params)}")
        for k, v in params.items():
            if v.shape != template.params[k].shape:
                raise SgnsError(f"checkpoint {path} has {k} of shape {v.shape}, this run needs "
                                f"{template.params[k].shape}")
        params = {k: params[k] for k in template.params}  # the template's order
        state = TrainState(jax.tree.map(jax.numpy.asarray, params),
                           jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves]),
                           jax.numpy.asarray(z["step"]))
    return state, Progress(**meta["progress"]), meta["config"]
