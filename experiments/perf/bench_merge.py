"""Worker streams' merge alone: milliseconds a round spends merging, over chunks made beforehand.

    python experiments/perf/bench_merge.py [CORPUS] [--chunks 200] [--reps 2]

Default corpus ``../shared/data/mid.txt.gz`` (the bundled corpus when missing), the defaults of a
two-stream CPU run (``--workers 2``). The chunks are built first, so the rounds time training and
merging only; ``WorkerStreams.merge_seconds`` is the wall time from the round's workers done to
its merge done (``engine/workers.py``).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import jax

jax.config.update("jax_num_cpu_devices", 2)

from sgns_jax.config import TrainConfig  # noqa: E402
from sgns_jax.data.batches import epoch_chunks  # noqa: E402
from sgns_jax.data.corpus import encode_corpus  # noqa: E402
from sgns_jax.train.build import build_run  # noqa: E402
from bench_memory import default_corpus  # noqa: E402  (this folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?")
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    path = args.corpus or default_corpus()
    with tempfile.TemporaryDirectory() as cache:
        corpus = encode_corpus(path, min_count=5, cache_dir=cache)
        cfg = TrainConfig().replace(data={"corpus": path, "min_count": 5},
                                    run={"epochs": 1, "quiet": True, "parallelism": "workers",
                                         "devices": 2, "out": None})
        run = build_run(cfg, corpus)
        chunks = [c.arrays for c in itertools.islice(epoch_chunks(corpus, run.spec, 0), args.chunks)]
        state, size, streams = run.state, run.runner.chunks_per_call, run.runner.streams
        for rep in range(args.reps):
            streams.merge_seconds, streams.rounds = 0.0, 0
            t = time.perf_counter()
            for i in range(0, len(chunks), size):
                state, _, _ = run.runner.run(state, chunks[i:i + size])
            jax.block_until_ready(state)
            print(f"rep {rep}: {len(chunks)} chunks in {time.perf_counter() - t:.2f} s, merging "
                  f"{streams.merge_seconds:.2f} s = {1000 * streams.merge_seconds / streams.rounds:.1f} ms "
                  f"a round ({streams.rounds} rounds)", flush=True)


if __name__ == "__main__":
    main()
