"""Checkpoints: the whole training state in one ``.npz``, written atomically.

Saved: the parameter leaves (``param/<name>``: ``w_in`` and the output layer's), optimizer
state leaves, the global step, the position in the data (epoch and chunks done in it), the
running loss accumulators, the config, and the corpus's fingerprint (sizes and SHA-256 of its
vocabulary and of its encoded text). Because batches and keys are pure functions of (seed,
epoch, step), that is enough to continue bit for bit — on the same corpus with the same
settings, which :func:`load_checkpoint` checks before it restores anything.

A table whose rows are split across processes (``--parallelism vocab`` with ``jax.distributed``)
is never gathered on one host: each process writes the rows its devices hold to a file of its
own (``checkpoint-<table>-<first row>-<end row>.<words>.npz``), all processes wait until every
such file is written, and only then does process 0 write ``checkpoint.npz``, which names them —
the commit point. A crash before it leaves the previous ``checkpoint.npz`` and the files it
names (older files are deleted only after the new ``checkpoint.npz`` is written), so a resume
reads one save, never a mix. The directory must be one every process can read and write (a
shared file system across hosts). On resume each process reads only the files holding its own
rows (any process count: rows are found by range). orbax-checkpoint does this too, but brings
tensorstore and an asynchronous writer for what is here a few tables and a commit file.
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


def _shard_name(table: str, start: int, stop: int, words: int) -> str:
    return f"checkpoint-{table}-{start}-{stop}.{words}.npz"


def _row_ranges(x: jax.Array, rows: int, local: bool) -> list[tuple[int, int, Any]]:
    """(start, stop, device) of each device's rows of ``x`` below ``rows`` (padding dropped),
    every device's or this process's."""
    out = {}
    for device, index in x.sharding.devices_indices_map(x.shape).items():
        if local and device.process_index != jax.process_index():
            continue
        start, stop, _ = index[0].indices(x.shape[0])
        if min(stop, rows) > start:
            out.setdefault((start, min(stop, rows)), device)
    return [(a, b, d) for (a, b), d in sorted(out.items())]


def save_checkpoint(directory: str | Path, state: TrainState, progress: Progress,
                    config: dict[str, Any], corpus: dict[str, Any],
                    rows: dict[str, int] | None = None) -> Path:
    """Write the state; ``corpus`` is the corpus's fingerprint (``Corpus.fingerprint``),
    ``rows`` each table's rows without a sharded run's padding. Called by every process: each
    writes the rows it holds of tables split across processes, process 0 the rest and the
    commit file."""
    from sgns_jax.engine.mesh import fetch, split_across_processes

    rows = rows or {}
    path = checkpoint_path(directory)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, directory, "create") from None
    split = {k: v for k, v in state.params.items() if split_across_processes(v)}
    shards: dict[str, list] = {}
    for k, v in split.items():
        n = rows.get(k, v.shape[0])
        shards[k] = [[_shard_name(k, a, b, progress.words), a, b]
                     for a, b, _ in _row_ranges(v, n, local=False)]
        data = {d: s.data for s in v.addressable_shards for d in [s.device]}
        for a, b, device in _row_ranges(v, n, local=True):
            block = np.asarray(data[device])[:b - a]
            with atomic_open(Path(directory) / _shard_name(k, a, b, progress.words), "wb") as f:
                np.savez(f, rows=block, where=np.array([a, b, progress.words]))
    if split:  # every process's rows are on disk before the commit file names them
        _sync(f"checkpoint rows {progress.words}")
    if jax.process_index() == 0:
        leaves = jax.tree.leaves(state.opt_state)
        arrays = {f"param/{k}": fetch(v)[:rows.get(k, v.shape[0])]
                  for k, v in state.params.items() if k not in split}
        arrays.update({f"opt_{i}": fetch(x) for i, x in enumerate(leaves)})
        arrays["step"] = fetch(state.step)
        meta = {"format": FORMAT, "progress": progress.__dict__, "config": config, "corpus": corpus,
                "params": list(state.params), "opt_leaves": len(leaves), "row_files": shards,
                "row_shapes": {k: [rows.get(k, v.shape[0]), *v.shape[1:]] for k, v in split.items()}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        _delete_unnamed_row_files(directory, {f for files in shards.values() for f, _, _ in files})
    _sync(f"checkpoint {progress.words}")  # no process goes on (or exits, or resumes) before it is written
    return path


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _delete_unnamed_row_files(directory: str | Path, keep: set[str]) -> None:
    """Row files of earlier saves (the commit file no longer names them)."""
    for old in Path(directory).glob("checkpoint-*.npz"):
        if old.name not in keep:
            try:
                old.unlink()
            except OSError:
                pass  # left behind: never read, since no commit file names it


class RowShards:
    """A table saved as row files: sliced by rows (``table[a:b]``), it reads only the files
    holding those rows; ``np.asarray`` reads them all."""

    def __init__(self, directory: Path, files: list, shape: list, words: int):
        self.directory, self.files, self.words = Path(directory), files, words
        self.shape, self.dtype = tuple(shape), np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        if not isinstance(index, slice):
            raise TypeError("RowShards are sliced by rows")
        start, stop, step = index.indices(self.shape[0])
        out = np.zeros((max(stop - start, 0),) + self.shape[1:], self.dtype)
        for file, a, b in self.files:
            lo, hi = max(a, start), min(b, stop)
            if hi > lo:
                out[lo - start:hi - start] = self._read(file, a, b)[lo - a:hi - a]
        return out[::step]

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)

    def _read(self, file: str, a: int, b: int) -> np.ndarray:
        path = self.directory / file
        if not path.exists():
            raise CheckpointError(f"checkpoint {checkpoint_path(self.directory)} names {file}, which "
                                  f"is missing from {self.directory}")
        try:
            with np.load(path) as z:
                where, block = z["where"].tolist(), z["rows"]
        except OSError as e:
            raise storage_error(e, path, "read") from None
        except (zipfile.BadZipFile, EOFError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint file {path} is damaged ({type(e).__name__}: {e}); "
                                  "delete the checkpoint to start afresh, or put back a good "
                                  "copy") from None
        if where != [a, b, self.words] or block.shape != (b - a,) + self.shape[1:]:
            raise CheckpointError(f"checkpoint file {path} holds other rows than "
                                  f"{checkpoint_path(self.directory)} names")
        return block


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
            params = {k: z[f"param/{k}"] for k in names if f"param/{k}" in z.files}
            words = meta["progress"]["words"]
            params.update({k: RowShards(path.parent, files, meta["row_shapes"][k], words)
                           for k, files in meta.get("row_files", {}).items()})
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
            # Row files stay on disk until placed: each process then reads only its rows.
            state = TrainState({k: v if isinstance(v, RowShards) else asarray(v)
                                for k, v in params.items()},
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
