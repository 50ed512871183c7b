"""Worker streams: W persistent copies of the state, one per device, their updates summed.

word2vec and gensim use every core by running worker threads that update shared tables without
locks (Hogwild). XLA:CPU runs one step's small ops mostly on one core, and the exact
data-parallel path (:mod:`sgns_jax.engine.mesh`) repeats the whole scatter on every replica,
so neither uses a second core well. Worker streams do what the threads do, at chunk granularity:

* every worker keeps a replica of the state on its own device, equal to the base state at the
  start of each round;
* a round hands ``W × R`` consecutive chunks to ``W`` workers (worker ``w`` gets chunks
  ``w·R … w·R + R − 1``), each trains its replica with the ordinary jitted chunk function — the
  devices run concurrently — and records which table rows its updates touched;
* the round's new state is ``base + Σ_w (replica_w − base)``: every worker's SGD updates are
  applied, each computed against parameters up to one round stale (as Hogwild's are a few
  updates stale). Only rows some worker touched can differ from the base, so the merge gathers,
  sums and writes back just those rows — its cost follows the rows a round touches, not V·D —
  and every replica and the base receive the same merged rows, so they stay identical.

Memory: the base plus one replica per worker (W + 1 copies of the tables), allocated once.
Step counters are offset per worker (worker ``w`` starts at ``base.step + w·R·T``), so every
global step draws its own noise from ``fold_in(root_key, step)``. The result is deterministic
for a given ``W`` and ``R`` but, like gensim's ``workers``, differs from the one-stream run.
SGD only (optimizer state would need its own merge rule).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.engine.step import TrainState


# Tables up to this size (all leaves together) are merged whole; larger ones by the rows a round
# touched. Whole: ~3W passes over the tables and nothing per step; touched rows: ~10 passes over
# the touched rows plus a bitmap scatter in every step, which costs more than it saves until the
# vocabulary is large (docs/performance_notes.md).
WHOLE_TABLE_MERGE_BYTES = 48 << 20


def _merge_rows(base_RxD: jax.Array, first_RxD: jax.Array, ids_N: jax.Array,
                *other_rows_NxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rows ``ids`` of ``base + Σ_w (worker_w − base)`` — the first worker's table is on this
    device, the others' rows were gathered on theirs — written into ``base`` and into the first
    worker's table in one pass (ids equal to the row count are padding: read as zeros, dropped
    on write). Returns (base, first worker's table, merged rows)."""
    first_NxD = jnp.take(first_RxD, ids_N, axis=0, mode="fill", fill_value=0)
    if not other_rows_NxD:  # one worker (an epoch's tail): its rows, not b + (w − b)
        merged_NxD = first_NxD
    else:
        b_NxD = jnp.take(base_RxD, ids_N, axis=0, mode="fill", fill_value=0)
        merged_NxD = first_NxD + sum(w - b_NxD for w in other_rows_NxD)
    return (base_RxD.at[ids_N].set(merged_NxD, mode="drop"),
            first_RxD.at[ids_N].set(merged_NxD, mode="drop"), merged_NxD)


def _merge_tables(base_RxD: jax.Array, first_RxD: jax.Array, *other_RxD: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """``base + Σ_w (worker_w − base)`` over the whole table, twice: the new base, and the first
    worker's next replica (a separate buffer: the chunk donates its replica)."""
    merged_RxD = first_RxD + sum(w - base_RxD for w in other_RxD)
    return merged_RxD, jnp.copy(merged_RxD)


def _copy_into(dst_RxD: jax.Array, src_RxD: jax.Array) -> jax.Array:
    """``src`` written into ``dst``'s buffer (donated): a copy without allocating a table."""
    return jax.lax.dynamic_update_slice(dst_RxD, src_RxD, (0,) * dst_RxD.ndim)


def _alias_on(array: jax.Array, device: jax.Device) -> jax.Array:
    """``array`` (on a CPU device) as an array on ``device`` (a CPU device) sharing its buffer.

    Every CPU device's memory is the host's, and ``device_put`` of an aligned numpy array wraps
    it without a copy (a copy where it cannot: correct, only not free), so a table moves between
    CPU devices for nothing. ``jax.device_put(array, device)`` would allocate a table for every
    move, 2(W − 1) moves per table a round: glibc keeps the freed ones scattered between live
    blocks (docs/performance_notes.md), or, made to unmap them, faults them back in every round.

    The numpy view is made from the buffer's address, not with ``np.asarray``: a view from
    ``np.asarray`` is an external reference the runtime drops only when the alias's last use
    has been cleaned up, a moment after its result is ready, and a buffer with an external
    reference is copied instead of donated (1–3% of rounds). The view assumes JAX's default
    layout (row-major, dense). The caller owns the safety that this gives up: ``array`` is not
    overwritten or donated while the alias is in use (the merge waits for the computations that
    read an alias before anything writes what it aliases); the alias keeps ``array`` alive."""
    array.block_until_ready()  # its address holds its values only once they are computed
    raw = (ctypes.c_char * array.nbytes).from_address(array.unsafe_buffer_pointer())
    raw.source = array  # the view holds ``raw``, the alias holds the view: the buffer outlives them
    view = np.frombuffer(raw, dtype=array.dtype).reshape(array.shape)
    view.flags.writeable = False
    return jax.device_put(view, device)


def _take_rows(table_RxD: jax.Array, ids_N: jax.Array) -> jax.Array:
    return jnp.take(table_RxD, ids_N, axis=0, mode="fill", fill_value=0)


def _set_rows(table_RxD: jax.Array, ids_N: jax.Array, rows_NxD: jax.Array) -> jax.Array:
    return table_RxD.at[ids_N].set(rows_NxD, mode="drop")


def _touched_ids(touched_R: jax.Array, size: int) -> jax.Array:
    """The touched rows' ids, padded to ``size`` with the row count."""
    return jnp.nonzero(touched_R, size=size, fill_value=touched_R.shape[0])[0].astype(jnp.int32)


def _bucket(count: int, rows: int) -> int:
    """A size ≥ count from a short ladder (2^k times 1, 1.25, 1.5 or 1.75: at most 25% padding,
    and merges compile for few sizes), at most ``rows``."""
    if count <= 8:
        return min(rows, 8)
    top = 1 << (count - 1).bit_length()  # the power of two ≥ count
    return min(rows, next(top // 8 * k for k in (5, 6, 7, 8) if top // 8 * k >= count))


@dataclass
class _Worker:
    """One stream of a round: its replica (on its device), its chunks, and their losses."""

    state: TrainState
    chunks: Sequence[Mapping[str, Any]]
    device: jax.Device
    key: jax.Array
    losses: list = field(default_factory=list)
    counts: list = field(default_factory=list)


class WorkerStreams:
    """Runs rounds of chunks on ``devices`` (one worker each) and merges them.

    ``chunk_fn(state, arrays, root_key_data) -> (state, loss_sum, count)`` is the jitted chunk
    of :func:`sgns_jax.engine.step.chunk_steps`, jitted (it donates its state).
    """

    def __init__(self, chunk_fn: Callable, devices: Sequence[jax.Device], root_key_data: jax.Array,
                 steps_per_chunk: int, chunks_per_worker: int):
        self.chunk_fn = chunk_fn
        self.devices = list(devices)
        self.keys = [jax.device_put(root_key_data, d) for d in self.devices]
        self.steps_per_chunk = steps_per_chunk
        self.chunks_per_worker = chunks_per_worker
        self.replicas: list[TrainState] = []
        self.merge_rows = jax.jit(_merge_rows, donate_argnums=(0, 1))
        self.merge_tables = jax.jit(_merge_tables, donate_argnums=(0, 1))
        # Small tables merge whole: cheaper than marking every step's rows and gathering them.
        self.whole_tables = True
        self.copy_into = jax.jit(_copy_into, donate_argnums=(0,))
        self.copy_table = jax.jit(jnp.copy)
        # CPU devices share the host's memory: tables move between them without copies.
        self.host_memory = all(d.platform == "cpu" for d in self.devices)
        self.take_rows = jax.jit(_take_rows)
        self.set_rows = jax.jit(_set_rows, donate_argnums=(0,))
        self.touched_ids = jax.jit(_touched_ids, static_argnums=(1,))
        self.merge_seconds = 0.0  # wall time of the merges (the round's workers done, to merge done)
        self.rounds = 0

    @property
    def chunks_per_round(self) -> int:
        return len(self.devices) * self.chunks_per_worker

    def place(self, state: TrainState) -> TrainState:
        """The base state on the first worker's device. The replicas are made at the first
        round, after :meth:`compile`: the compiler's temporaries and the replicas are never
        held together (the setup's peak)."""
        self.whole_tables = sum(x.nbytes for x in state.params.values()) <= WHOLE_TABLE_MERGE_BYTES
        self.replicas = []
        return jax.device_put(state, self.devices[0])

    def _make_replicas(self, state: TrainState) -> None:
        """A replica of ``state`` (the base, on the first device) on every device, each a buffer
        of its own (the chunk donates it), one replica at a time, without a transient copy."""
        first = self.devices[0]

        def replica(x, device):
            if device == first:
                return self.copy_table(x)
            if self.host_memory:
                return self.copy_table(_alias_on(x, device))
            return jax.device_put(x, device)

        self.replicas = []
        for device in self.devices:
            self.replicas.append(jax.tree.map(lambda x: replica(x, device), state))
            jax.block_until_ready(self.replicas[-1])  # the aliases are read before anything donates the base

    def compile(self, state: TrainState, arrays: Mapping[str, Any]) -> None:
        """Compile the chunk for every worker's device, the whole-table merge and the copies that
        make and refresh the replicas, without running them (merges of touched rows compile when
        first needed). The replicas themselves are made by the first round (a copy of the
        tables, inside the timed training: milliseconds)."""
        def on(device, tree):
            sharding = jax.sharding.SingleDeviceSharding(device)
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

        for device, key in zip(self.devices, self.keys):
            self.chunk_fn.lower(on(device, self._with_touched(state)), on(device, arrays), key).compile()
        for table in state.params.values():
            for device in self.devices:
                self.copy_table.lower(on(device, table)).compile()
            if self.whole_tables:
                if len(self.devices) > 1:  # the base and every worker's table
                    self.merge_tables.lower(*on(self.devices[0], [table] * (1 + len(self.devices)))).compile()
                # device 0: an epoch's tail round; the others: the replicas' refresh on the CPU
                for device in self.devices[:None if self.host_memory else 1]:
                    self.copy_into.lower(*on(device, [table, table])).compile()

    def _with_touched(self, state: TrainState) -> TrainState:
        if self.whole_tables:
            return state._replace(touched=None)
        return state._replace(touched={k: jnp.zeros(v.shape[0], bool, device=v.sharding)
                                       for k, v in state.params.items()})

    def _merge_whole(self, table: str, params: dict, replicas: list[dict], touched: list) -> None:
        """Merge ``table`` whole into ``params`` (the base) and every replica, in place: on the
        CPU without allocating a table (see :func:`_alias_on`), elsewhere with one moved table
        at a time (the others' tables are moved to the first device, donated)."""
        first = self.devices[0]
        others = []
        for w in range(1, len(touched)):
            if self.host_memory:
                others.append(_alias_on(replicas[w][table], first))
            else:
                others.append(jax.device_put(replicas[w][table], first, donate=True))
                replicas[w][table] = None
        if others:
            params[table], replicas[0][table] = self.merge_tables(params[table], replicas[0][table], *others)
        else:  # one worker (an epoch's tail): its table is the new base, copied into the old one's buffer
            params[table], replicas[0][table] = replicas[0][table], self.copy_into(params[table], replicas[0][table])
        # The merge reads the other workers' buffers (aliased): done before they are overwritten.
        jax.block_until_ready(params[table])
        del others
        for w, device in enumerate(self.devices[1:], start=1):
            if self.host_memory:
                replicas[w][table] = self.copy_into(replicas[w][table], _alias_on(params[table], device))
            else:
                replicas[w][table] = None
                replicas[w][table] = jax.device_put(params[table], device)
        # One table at a time: the next table's moves start once this one's are done (and, on
        # the CPU, the reads through the base's aliases are done before the next round donates it).
        jax.block_until_ready([rep[table] for rep in replicas])

    def _merge_touched(self, table: str, params: dict, replicas: list[dict], touched: list) -> None:
        """Merge only the rows of ``table`` some worker touched this round (``touched``: each
        worker's row marks), in place."""
        first = self.devices[0]
        rows = touched[0][table]
        for marks in touched[1:]:
            rows = rows | jax.device_put(marks[table], first)
        ids = self.touched_ids(rows, _bucket(int(rows.sum()), params[table].shape[0]))
        other_rows = [jax.device_put(self.take_rows(replicas[w][table], jax.device_put(ids, self.devices[w])), first)
                      for w in range(1, len(touched))]
        params[table], replicas[0][table], merged = self.merge_rows(
            params[table], replicas[0][table], ids, *other_rows)
        for w, device in enumerate(self.devices[1:], start=1):
            replicas[w][table] = self.set_rows(replicas[w][table], jax.device_put(ids, device),
                                               jax.device_put(merged, device))

    def round(self, state: TrainState, chunks: Sequence[Mapping[str, Any]]
              ) -> tuple[TrainState, jax.Array, jax.Array]:
        """Train ``chunks`` (at most ``chunks_per_round``) from ``state`` (the base from
        :meth:`place` or the previous round); returns the merged state and the summed loss
        and count of the chunks' reporting steps."""
        if not 1 <= len(chunks) <= self.chunks_per_round:
            raise ValueError(f"a round takes 1 to {self.chunks_per_round} chunks, got {len(chunks)}")
        if not self.replicas:
            self._make_replicas(state)
        r = self.chunks_per_worker
        groups = [chunks[i:i + r] for i in range(0, len(chunks), r)]
        step0 = state.step
        workers = []
        for w, group in enumerate(groups):
            device = self.devices[w]
            start = self._with_touched(self.replicas[w])
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
        jax.block_until_ready([worker.state.params for worker in workers])
        t = time.perf_counter()
        first = self.devices[0]
        params = dict(state.params)
        replicas = [dict(rep.params) for rep in self.replicas]
        touched = []
        for w, worker in enumerate(workers):
            replicas[w] = dict(worker.state.params)
            touched.append(worker.state.touched)
            worker.state = None  # its tables now referenced once: a merge can free them
        self.replicas = [rep._replace(params=None) for rep in self.replicas]
        merge = self._merge_whole if self.whole_tables else self._merge_touched
        for table in params:
            merge(table, params, replicas, touched)
        self.replicas = [rep._replace(params=p, touched=None) for rep, p in zip(self.replicas, replicas)]
        jax.block_until_ready((params, replicas))  # time the merge's work, not its dispatch
        self.merge_seconds += time.perf_counter() - t
        self.rounds += 1
        steps = len(chunks) * self.steps_per_chunk
        loss = sum(jax.device_put(x, first) for worker in workers for x in worker.losses)
        count = sum(jax.device_put(x, first) for worker in workers for x in worker.counts)
        return TrainState(params, state.opt_state, step0 + steps), loss, count
