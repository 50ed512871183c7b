"""What a run will hold in memory, estimated before it starts (printed in the run summary).

The parts that grow with the problem: the parameter tables (V·D floats each) times the copies
the parallelism keeps, the optimizer's row state, the encoded corpus (int32 per token, memory-
mapped: resident as it is read) and the host chunks in flight. Add the JAX runtime itself
(about 0.2 GB for the CPU backend, measured by ``experiments/bench_memory.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

JAX_RUNTIME_BYTES = 200 * 2**20
_OPTIMIZER_SLOTS = {"sgd": 0, "adagrad": 1, "adam": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    table_bytes: int      # one copy of every parameter table
    copies: int           # copies of the tables the run keeps
    optimizer_bytes: int
    corpus_bytes: int
    chunk_bytes: int      # host chunks in flight (prefetch queue + the one being placed)

    @property
    def total_bytes(self) -> int:
        return (self.table_bytes * self.copies + self.optimizer_bytes + self.corpus_bytes
                + self.chunk_bytes + JAX_RUNTIME_BYTES)

    def summary(self) -> str:
        mb = lambda b: f"{b / 2**20:,.0f} MB"
        parts = [f"tables {mb(self.table_bytes)}" + (f" × {self.copies} copies" if self.copies > 1 else "")]
        if self.optimizer_bytes:
            parts.append(f"optimizer state {mb(self.optimizer_bytes)}")
        parts.append(f"corpus {mb(self.corpus_bytes)} (memory-mapped)")
        return f"memory: {', '.join(parts)}; about {self.total_bytes / 2**30:.2f} GB with the JAX runtime"


def estimate_memory(specs: dict, corpus_tokens: int, *, copies: int,
                    optimizer: str, dense_update: bool, chunk_bytes: int) -> MemoryEstimate:
    """Bytes a run needs, from its parameter tree (``{name: ParamSpec}``) and the ``copies`` of
    it the parallelism keeps (its runner says); the dense update path adds a gradient the size
    of the tables."""
    tables = sum(spec.nbytes for spec in specs.values())
    copies = copies + (1 if dense_update else 0)
    return MemoryEstimate(tables, copies, tables * _OPTIMIZER_SLOTS.get(optimizer, 2),
                          4 * corpus_tokens, 3 * chunk_bytes)
