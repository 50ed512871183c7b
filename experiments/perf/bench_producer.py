"""Host batch producer alone: seconds to turn one epoch into chunks, per block size.

    python experiments/perf/bench_producer.py [CORPUS] [--blocks 131072,65536,32768,16384] [--reps 2]

Default corpus ``../shared/data/mid.txt.gz`` (the bundled corpus when missing); the mid-size
defaults of a CPU run (windows layout, batch 64, 128 steps a chunk, window 5, sample 1e-3). The
producer runs in a thread beside training, so its time per epoch is what a block size costs
(``data/batches.py`` ``BLOCK_TOKENS``; its memory is in ``bench_memory.py``'s phases).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from sgns_jax.data.batches import BatchSpec, epoch_chunks
from sgns_jax.data.corpus import encode_corpus

from bench_memory import default_corpus  # this folder's


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?")
    p.add_argument("--blocks", default="131072,65536,32768,16384")
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    corpus_path = args.corpus or default_corpus()
    with tempfile.TemporaryDirectory() as cache:
        corpus = encode_corpus(corpus_path, min_count=5, cache_dir=cache)
        for rep in range(args.reps):
            for block in (int(b) for b in args.blocks.split(",")):
                spec = BatchSpec(layout="windows", batch_size=64, steps_per_chunk=128, window=5,
                                 sample=1e-3, block_tokens=block)
                t = time.perf_counter()
                chunks = sum(1 for _ in epoch_chunks(corpus, spec, 0))
                print(f"rep {rep} block {block:>7} tokens: {chunks} chunks in "
                      f"{time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
