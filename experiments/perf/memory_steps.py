"""Memory step by step through a run's setup and training: RSS, anonymous memory and glibc's heap.

    python experiments/perf/memory_steps.py [CORPUS] [--workers 2] [--epochs 1] [--one-compile]

Default corpus ``../shared/data/mid.txt.gz`` (the bundled corpus when missing), the settings of
``bench_memory.py``, the corpus cache in a temporary folder, scanned first (so the steps start
after the scan). After each step of ``build_run`` (and at a few training events) it prints the
process's RSS, its high-water mark, its anonymous memory, and from ``mallinfo2`` glibc's heap:
the arenas' size, what of it is in use, and the blocks mapped on their own (tables and other
large buffers allocated before glibc raised its mmap threshold). A heap much larger than what is
in use is memory freed but kept resident between live blocks. ``--one-compile`` compiles the
chunk for the first stream's device only (the second compiles at its first use), to see what
one compilation leaves. glibc only (Linux); not a benchmark of speed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import threading


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


_LIBC = ctypes.CDLL(None)
_LIBC.mallinfo2.restype = _MallInfo2


def snapshot(step: str) -> None:
    info = _LIBC.mallinfo2()
    status = {}
    for line in open("/proc/self/status"):
        key, value = line.split(":", 1)
        if key in ("RssAnon", "VmRSS", "VmHWM"):
            status[key] = int(value.split()[0]) / 1024
    mb = 2 ** 20
    print(f"{step:>22}  rss {status['VmRSS']:5.0f}  peak {status['VmHWM']:5.0f}  anon {status['RssAnon']:5.0f}"
          f"  | heap {info.arena / mb:6.1f}  in use {info.uordblks / mb:6.1f}  mapped alone {info.hblkhd / mb:5.1f}"
          f"  threads {threading.active_count()}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--one-compile", action="store_true")
    args = p.parse_args()

    from sgns_jax.cli import fewer_malloc_arenas

    fewer_malloc_arenas()  # as the command line does, before JAX starts its threads
    import jax

    if args.workers > 1:
        jax.config.update("jax_num_cpu_devices", args.workers)
    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()
    snapshot("import")
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_memory import SETTINGS, default_corpus

    import sgns_jax.engine.workers as workers
    import sgns_jax.train.build as build
    from sgns_jax.config import TrainConfig
    from sgns_jax.data.corpus import encode_corpus
    from sgns_jax.train.loop import train

    corpus_path = args.corpus or default_corpus()
    cache = tempfile.mkdtemp(prefix="memory-steps-")
    corpus = encode_corpus(corpus_path, min_count=SETTINGS["min_count"], cache_dir=cache)
    snapshot("corpus scan")

    def after(owner, name):
        original = getattr(owner, name)

        def wrapped(*a, **k):
            result = original(*a, **k)
            snapshot(name)
            return result
        setattr(owner, name, wrapped)

    for name in ("release_free_memory", "build_layer", "chunk_consts", "init_params", "init_state"):
        after(build, name)
    for name in ("place", "compile", "_make_replicas"):
        after(workers.WorkerStreams, name)
    if args.one_compile:
        compile_all = workers.WorkerStreams.compile

        def compile_first(self, state, arrays):
            devices, keys = self.devices, self.keys
            self.devices, self.keys = devices[:1], keys[:1]
            try:
                compile_all(self, state, arrays)
            finally:
                self.devices, self.keys = devices, keys
        workers.WorkerStreams.compile = compile_first

    events = [0]

    def callback(event) -> None:
        events[0] += 1
        if events[0] in (1, 3, 10, 30) or events[0] % 100 == 0:
            snapshot(f"event {events[0]}")

    cfg = TrainConfig().replace(
        data={"corpus": corpus_path, "window": SETTINGS["window"], "sample": SETTINGS["sample"],
              "min_count": SETTINGS["min_count"], "cache_dir": cache},
        model={"dim": SETTINGS["dim"]}, loss={"negative": SETTINGS["negative"]},
        run={"epochs": args.epochs, "quiet": True,
             "parallelism": "workers" if args.workers > 1 else "single", "devices": args.workers})
    result = train(cfg, corpus, callback)
    snapshot("trained")
    print(f"{result.words_per_second:,.0f} words/s (one run: not a speed benchmark)")


if __name__ == "__main__":
    main()
