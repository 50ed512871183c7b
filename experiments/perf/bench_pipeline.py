"""Host pipeline benchmark: corpus encoding tokens/s and batch generation pairs/s.

    python experiments/perf/bench_pipeline.py [CORPUS]

Expected on the 2-core dev machine with the bundled corpus (1.34 M tokens): encoding about
3 M tokens/s; pairs layout about 13 M pairs/s and windows layout about 25 M pairs/s on one core.
"""

from __future__ import annotations

import sys
import tempfile
import time
from importlib import resources

from sgns_jax.data.batches import BatchSpec, epoch_chunks
from sgns_jax.data.corpus import encode_corpus


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(resources.files("sgns_jax") / "resources" / "wiki.txt.gz")
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        corpus = encode_corpus(path, min_count=5, cache_dir=cache)
        encode_s = time.perf_counter() - t
        t = time.perf_counter()
        encode_corpus(path, min_count=5, cache_dir=cache)
        cached_s = time.perf_counter() - t
    print(f"corpus: {path}: {corpus.raw_tokens:,} tokens, vocabulary {len(corpus.vocab):,}")
    print(f"encode: {encode_s:.2f} s = {corpus.raw_tokens / encode_s / 1e6:.2f} M tokens/s; "
          f"cached reload {cached_s * 1e3:.1f} ms")
    for layout in ("pairs", "windows"):
        spec = BatchSpec(layout=layout, batch_size=4096 if layout == "pairs" else 1024,
                         steps_per_chunk=32, window=5, sample=1e-3)
        best = float("inf")
        for epoch in range(3):
            t = time.perf_counter()
            pairs = 0
            for chunk in epoch_chunks(corpus, spec, epoch):
                pairs += int(chunk.arrays["mask"].sum())
            best = min(best, time.perf_counter() - t)
        print(f"batches ({layout:7s}): {pairs:,} pairs/epoch in {best:.3f} s = "
              f"{pairs / best / 1e6:.1f} M pairs/s, {len(corpus) / best / 1e6:.1f} M words/s")


if __name__ == "__main__":
    main()
