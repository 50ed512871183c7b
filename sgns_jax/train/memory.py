"""What a run will hold in memory, estimated before it starts (printed in the run summary), and
the refusal of a run that cannot fit.

The parts that grow with the problem: the parameter tables (V·D floats each) times the copies
the parallelism keeps, the optimizer's row state, the encoded corpus (int32 per token, memory-
mapped: resident as it is read), and the batches — the chunks in flight and the block of
examples the producer thread builds them from, both of which grow with the window (a token has
2·window context slots). Add the JAX runtime itself (about 0.2 GB for the CPU backend, measured
by ``experiments/perf/bench_memory.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sgns_jax.errors import ConfigError

_LIBC = None

JAX_RUNTIME_BYTES = 200 * 2**20
_OPTIMIZER_SLOTS = {"sgd": 0, "adagrad": 1, "adam": 2}
# The producer's numpy temporaries while it turns a block of tokens into examples (window masks,
# context ids, their index arithmetic, concatenations and the strided copy), per block token and
# context slot: measured with tracemalloc on the bundled corpus (blocks of 2^15 tokens, windows 5
# to 200): ~27 bytes a slot in the windows layout, ~12 in the pairs layout, and a few hundred
# bytes a token whatever the window.
_BLOCK_BYTES_PER_SLOT = {"windows": 28, "pairs": 13}
_BLOCK_BYTES_PER_TOKEN = 400


@dataclass(frozen=True)
class MemoryEstimate:
    table_bytes: int      # one copy of every parameter table
    copies: int           # copies of the tables the run keeps
    optimizer_bytes: int
    corpus_bytes: int
    batch_bytes: int      # chunks in flight and the producer's block of examples
    window: int = 0

    @property
    def total_bytes(self) -> int:
        return (self.table_bytes * self.copies + self.optimizer_bytes + self.corpus_bytes
                + self.batch_bytes + JAX_RUNTIME_BYTES)

    def summary(self) -> str:
        mb = lambda b: f"{b / 2**20:,.0f} MB"
        parts = [f"tables {mb(self.table_bytes)}" + (f" × {self.copies} copies" if self.copies > 1 else "")]
        if self.optimizer_bytes:
            parts.append(f"optimizer state {mb(self.optimizer_bytes)}")
        parts.append(f"batches {mb(self.batch_bytes)} (window {self.window})")
        parts.append(f"corpus {mb(self.corpus_bytes)} (memory-mapped)")
        return f"memory: {', '.join(parts)}; about {self.total_bytes / 2**30:.2f} GB with the JAX runtime"


def estimate_memory(specs: dict, corpus_tokens: int, *, copies: int, optimizer: str,
                    dense_update: bool, batch_bytes: int, window: int = 0) -> MemoryEstimate:
    """Bytes a run needs, from its parameter tree (``{name: ParamSpec}``) and the ``copies`` of
    it the parallelism keeps (its runner says); the dense update path adds a gradient the size
    of the tables."""
    tables = sum(spec.nbytes for spec in specs.values())
    copies = copies + (1 if dense_update else 0)
    return MemoryEstimate(tables, copies, tables * _OPTIMIZER_SLOTS.get(optimizer, 2),
                          4 * corpus_tokens, batch_bytes, window)


def batch_bytes(spec, chunks_per_call: int) -> int:
    """The batches' memory for a ``BatchSpec``: the prefetch queue (2 chunks), the one being
    built, the group being trained and its copy on the device, and the producer's block."""
    chunk = sum(a.nbytes for a in spec.zero_chunk().values())  # zeros: never touched, no RSS
    block = spec.block_tokens * (2 * spec.window * _BLOCK_BYTES_PER_SLOT[spec.layout]
                                 + _BLOCK_BYTES_PER_TOKEN)
    return chunk * (3 + 2 * chunks_per_call) + block


def available_memory() -> int | None:
    """Bytes the machine can still give this process: ``MemAvailable``, lowered to what is left
    under a cgroup's memory limit (containers); None where neither can be read."""
    known = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    known.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as f, open(usage) as g:
                known.append(int(f.read()) - int(g.read()))
        except (OSError, ValueError):  # no such cgroup, or "max": no limit
            pass
    return min(known) if known else None


def check_fits(memory: MemoryEstimate, available: int | None) -> None:
    """Refuse, before anything large is allocated, a run whose estimate exceeds the memory left.
    The corpus is left out (memory-mapped, or already loaded) and so is the JAX runtime (already
    running)."""
    needed = memory.total_bytes - memory.corpus_bytes - JAX_RUNTIME_BYTES
    if available is None or needed <= available:
        return
    gb = lambda b: f"{b / 2**30:,.1f} GB"
    tables = memory.table_bytes * memory.copies + memory.optimizer_bytes
    if memory.batch_bytes >= tables:
        advice = (f"the batches grow with the window ({memory.window}) and the batch size: lower "
                  "--window or --batch-size")
    else:
        advice = ("the tables grow with the vocabulary and the dimension: raise --min-count, set "
                  "--max-vocab or lower --dim" + (", or train one stream (--workers 1)"
                                                  if memory.copies > 1 else ""))
    raise ConfigError(f"this run needs about {gb(needed)} of memory (tables {gb(tables)}, batches "
                      f"{gb(memory.batch_bytes)}) and {gb(available)} is available; {advice}")


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). glibc keeps what a phase frees — the scan's dictionary, the compiler's
    temporaries, a block's numpy temporaries (megabytes each, from the heap once glibc has
    raised its mmap threshold) — scattered between live allocations, where it counts in the
    process's memory until reused. Called between phases (not during training: what the merges
    free is reused by the next round, and given back it faults in again, 0.91× the speed): a
    walk of the heap, milliseconds."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        try:
            _LIBC = ctypes.CDLL(None)
            _LIBC.malloc_trim  # not glibc: AttributeError
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
