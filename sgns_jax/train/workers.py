"""Worker streams: W independent copies of the state, one per device, their updates summed.

word2vec and gensim use every core by running worker threads that update shared tables without
locks (Hogwild). XLA:CPU runs one step's small ops mostly on one core, and the exact
data-parallel path (:mod:`sgns_jax.train.parallel`) repeats the whole scatter on every replica,
so neither uses a second core well. Worker streams do what the threads do, at chunk granularity:

* a round hands ``W × R`` consecutive chunks to ``W`` workers (worker ``w`` gets chunks
  ``w·R … w·R + R − 1``); each worker starts from the round's base state on its own device and
  trains its chunks with the ordinary jitted chunk function — the devices run concurrently;
* the round's new state is ``base + Σ_w (state_w − base)``: every worker's SGD updates are
  applied, each computed against parameters up to one round stale (as Hogwild's are a few
  updates stale).

Step counters are offset per worker (worker ``w`` starts at ``base.step + w·R·T``), so every
global step draws its own noise from ``fold_in(root_key, step)``. The result is deterministic
for a given ``W`` and ``R`` but, like gensim's ``workers``, differs from the one-stream run.
SGD only (optimizer state would need its own merge rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from sgns_jax.train.step import TrainState


# R: chunks each worker trains between merges. A merge moves the tables between devices and
# sums them (~10–17 ms for V = 16k, D = 100 on the 2-core development machine). Measured with
# experiments/bench_vs_gensim.py (5 epochs, 2 workers): R = 1, 2, 4 gave per-pair NS 0.63×,
# 0.67×, 0.69× gensim's words/s with 3.25%, 3.32%, 2.74% analogies (one stream: 3.14%); R = 4's
# staleness (R·T·B = 131k pairs per worker) cost about half a point in every mode, R = 2 not.
CHUNKS_PER_WORKER = 2


def _merge(base: dict, *workers: dict) -> dict:
    """base + Σ_w (worker_w − base), table by table."""
    return {k: base[k] + sum(w[k] - base[k] for w in workers) for k in base}


@dataclass
class _Worker:
    """One stream of a round: its state (on its device), its chunks, and their losses."""

    state: TrainState
    chunks: Sequence[Mapping[str, Any]]
    device: jax.Device
    key: jax.Array
    losses: list = field(default_factory=list)
    counts: list = field(default_factory=list)


class WorkerStreams:
    """Runs rounds of chunks on ``devices`` (one worker each) and merges them.

    ``chunk_fn(state, arrays, root_key_data) -> (state, loss_sum, count)`` is the jitted chunk
    of :func:`sgns_jax.train.step.make_train_chunk` (it donates its state).
    """

    def __init__(self, chunk_fn: Callable, devices: Sequence[jax.Device], root_key_data: jax.Array,
                 steps_per_chunk: int, chunks_per_worker: int):
        self.chunk_fn = chunk_fn
        self.devices = list(devices)
        self.keys = [jax.device_put(root_key_data, d) for d in self.devices]
        self.steps_per_chunk = steps_per_chunk
        self.chunks_per_worker = chunks_per_worker
        self.merge = jax.jit(_merge, donate_argnums=(0,))

    @property
    def chunks_per_round(self) -> int:
        return len(self.devices) * self.chunks_per_worker

    def place(self, state: TrainState) -> TrainState:
        """The base state lives on the first worker's device."""
        return jax.device_put(state, self.devices[0])

    def compile(self, state: TrainState, arrays: Mapping[str, Any]) -> None:
        """Compile the chunk for every worker's device, and the merge, without running them."""
        def on(device, tree):
            sharding = jax.sharding.SingleDeviceSharding(device)
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

        for device, key in zip(self.devices, self.keys):
            self.chunk_fn.lower(on(device, state), on(device, arrays), key).compile()
        params = on(self.devices[0], state.params)
        self.merge.lower(params, *[params] * len(self.devices)).compile()

    def round(self, state: TrainState, chunks: Sequence[Mapping[str, Any]]
              ) -> tuple[TrainState, jax.Array, jax.Array]:
        """Train ``chunks`` (at most ``chunks_per_round``) from ``state``; returns the merged
        state and the summed loss and count of the chunks' reporting steps."""
        if not 1 <= len(chunks) <= self.chunks_per_round:
            raise ValueError(f"a round takes 1 to {self.chunks_per_round} chunks, got {len(chunks)}")
        r = self.chunks_per_worker
        groups = [chunks[i:i + r] for i in range(0, len(chunks), r)]
        if len(groups) == 1:  # one worker's worth (an epoch's tail): no copy, no merge
            return self._run(state, groups[0], self.devices[0], self.keys[0])
        step0 = state.step
        workers = []
        for w, group in enumerate(groups):
            device = self.devices[w]
            # Every worker trains a copy (the chunk donates its state): the base is kept for
            # the merge.
            start = jax.tree.map(jnp.copy, state) if w == 0 else jax.device_put(state, device)
            start = start._replace(step=jax.device_put(step0 + w * r * self.steps_per_chunk, device))
            workers.append(_Worker(start, group, device, self.keys[w]))
        # Dispatch chunk by chunk across the workers so every device always has work queued.
        for i in range(r):
            for worker in workers:
                if i < len(worker.chunks):
                    worker.state, loss, count = self.chunk_fn(
                        worker.state, jax.device_put(worker.chunks[i], worker.device), worker.key)
                    worker.losses.append(loss)
                    worker.counts.append(count)
        first = self.devices[0]
        params = self.merge(state.params,
                            *[jax.device_put(worker.state.params, first) for worker in workers])
        steps = len(chunks) * self.steps_per_chunk
        loss = sum(jax.device_put(x, first) for worker in workers for x in worker.losses)
        count = sum(jax.device_put(x, first) for worker in workers for x in worker.counts)
        return TrainState(params, state.opt_state, step0 + steps), loss, count

    def _run(self, state, group, device, key):
        loss = count = 0.0
        for arrays in group:
            state, l, c = self.chunk_fn(state, jax.device_put(arrays, device), key)
            loss, count = loss + l, count + c
        return state, loss, count
