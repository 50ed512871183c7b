"""Checkpoints: the whole training state in one ``.npz``, written atomically.

Saved: the parameter leaves (``param/<name>``: ``w_in`` and the output layer's), optimizer
state leaves, the global step, the position in the data (epoch and chunks done in it), the
running loss accumulators, the config, and the corpus's fingerprint (sizes and SHA-256 of its
vocabulary and of its encoded text). Because batches and keys are pure functions of (seed,
epoch, step), that is enough to continue bit for bit — on the same corpus with the same
settings, which :func:`load_checkpoint` checks before it restores anything.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sgns_jax.errors import CheckpointError
from sgns_jax.io_utils import atomic_open, check_directory_writable, storage_error
from sgns_jax.engine.step import TrainState

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT = 2  # 2: parameter leaves by name (param/<name>), corpus fingerprint

# Settings a resumed run may change: where things are written, how much is printed, the time
# budget, how processes find each other, and where the corpus lives (its content is checked by
# its fingerprint). Every other setting shapes the result — the model, the data and its
# batches, the learning-rate schedule (which spans epochs × words or max_words), the seed, the
# parallelism — so a resume that changed one would not continue the run it claims to.
MAY_CHANGE_ON_RESUME = {
    "data": {"corpus", "cache_dir"},
    "run": {"out", "binary", "checkpoint_dir", "checkpoint_minutes", "resume", "metrics", "quiet",
            "verbose", "max_seconds", "coordinator", "num_processes", "process_id"},
}


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


def check_checkpoint_dir(directory: str | Path, resume: bool) -> None:
    """Before a run: the directory can be written, and a fresh run does not silently replace a
    checkpoint someone may still want to resume."""
    path = checkpoint_path(directory)
    if path.exists() and not resume:
        raise CheckpointError(f"{directory} already holds a checkpoint: continue it with --resume, "
                              f"or start afresh in another --checkpoint-dir (or delete {path})")
    check_directory_writable(directory, "checkpoint directory")


def save_checkpoint(directory: str | Path, state: TrainState, progress: Progress,
                    config: dict[str, Any], corpus: dict[str, Any]) -> Path:
    """Write the state; ``corpus`` is the corpus's fingerprint (``Corpus.fingerprint``)."""
    from sgns_jax.engine.mesh import fetch

    path = checkpoint_path(directory)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, directory, "create") from None
    leaves = jax.tree.leaves(state.opt_state)
    arrays = {f"param/{k}": fetch(v) for k, v in state.params.items()}
    arrays.update({f"opt_{i}": fetch(x) for i, x in enumerate(leaves)})
    arrays["step"] = fetch(state.step)
    meta = {"format": FORMAT, "progress": progress.__dict__, "config": config, "corpus": corpus,
            "params": list(state.params), "opt_leaves": len(leaves)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_checkpoint(directory: str | Path, template: TrainState,
                    expect: dict[str, Any] | None = None) -> tuple[TrainState, Progress, dict]:
    """Restore into the structure of ``template`` (a freshly initialised state).

    ``expect`` (``{"config": resolved config dict, "corpus": fingerprint}``): the run that
    resumes; a checkpoint of another corpus or with other result-shaping settings is refused
    with a ``CheckpointError`` that names the difference. A damaged file is refused too.
    Returns the state, the progress and the saved config.
    """
    path = checkpoint_path(directory)
    if not path.exists():
        raise CheckpointError(f"no checkpoint to resume from in {directory}")
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"checkpoint {path} was written by another version of "
                                      "sgns_jax and cannot be checked against this run; start "
                                      "afresh in another --checkpoint-dir")
            if expect is not None:
                check_resumable(path, meta, expect)
            names = list(template.params)
            if sorted(meta["params"]) != sorted(names):
                raise CheckpointError(f"checkpoint {path} holds the parameters {meta['params']}, "
                                      f"this run's output layer has {names}")
            params = {k: z[f"param/{k}"] for k in names}
            for name, saved in params.items():
                if saved.shape != template.params[name].shape:
                    raise CheckpointError(f"checkpoint {path} has {name} of shape {saved.shape}, "
                                          f"this run needs {template.params[name].shape}")
            treedef = jax.tree.structure(template.opt_state)
            leaves = [z[f"opt_{i}"] for i in range(meta["opt_leaves"])]
            if len(leaves) != treedef.num_leaves:
                raise CheckpointError(f"checkpoint {path} does not match this configuration's "
                                      "optimizer")
            asarray = jax.numpy.asarray
            state = TrainState({k: asarray(v) for k, v in params.items()},
                               jax.tree.unflatten(treedef, [asarray(x) for x in leaves]),
                               asarray(z["step"]))
            return state, Progress(**meta["progress"]), meta["config"]
    except CheckpointError:
        raise
    except OSError as e:
        raise storage_error(e, path, "read") from None
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); delete it "
                              "to start afresh, or put back a good copy") from None


# (section, key) → the behaviour of runs before the key existed.
FIELDS_ADDED_SINCE_CHECKPOINTS_BEGAN = {("data", "pipeline"): "host"}


def check_resumable(path: Path, meta: dict, expect: dict) -> None:
    """Refuse to resume a checkpoint of other settings or of another corpus."""
    saved = meta["config"]
    now = json.loads(json.dumps(expect["config"]))  # as saved: tuples become lists
    def was(section: str, key: str):
        """The saved setting; for one added since the checkpoint was written, what that run did."""
        fields = saved.get(section, {})
        return fields[key] if key in fields else FIELDS_ADDED_SINCE_CHECKPOINTS_BEGAN.get((section, key))

    changed = [f"{section}.{key} {was(section, key)!r} (this run: {value!r})"
               for section, fields in now.items() for key, value in fields.items()
               if key not in MAY_CHANGE_ON_RESUME.get(section, ()) and was(section, key) != value]
    if changed:
        raise CheckpointError(f"checkpoint {path} was written with other settings: "
                              f"{', '.join(changed)}; resume with the checkpoint's settings, or "
                              "start afresh in another --checkpoint-dir")
    was, corpus = meta["corpus"], expect["corpus"]
    if was["vocab_sha256"] != corpus["vocab_sha256"]:
        raise CheckpointError(
            f"checkpoint {path} was trained on another corpus: its vocabulary of "
            f"{was['vocab_words']:,} words differs from this corpus's {corpus['vocab_words']:,}; "
            "resume on the corpus it was trained on, or start afresh in another --checkpoint-dir")
    if was != corpus:
        raise CheckpointError(
            f"checkpoint {path} was trained on another text with the same vocabulary "
            f"({was['tokens']:,} tokens there, {corpus['tokens']:,} here, or the same count in "
            "another order); resume on the corpus it was trained on, or start afresh in another "
            "--checkpoint-dir")
