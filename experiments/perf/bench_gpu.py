"""Accelerator throughput: words/s and pairs/s per strategy, vocabulary and device count, beside a
roofline measured on the same device.

    python experiments/perf/bench_gpu.py [--vocabs 16000,71000,1000000] [--devices 1,8]
                                    [--strategies window,pair,batch,hs,full] [--seconds 20]
                                    [--tokens 5000000] [--matmul-dtype bfloat16]
                                    [--out docs/bench_gpu.json]
    python experiments/perf/bench_gpu.py --tiny      # a seconds-long CPU run (what the tests run)

Made for a GPU/TPU host; on a CPU it runs as well (slowly, and with ``--devices`` simulated on
the same cores). The corpus is ``bench_vocab_scaling.py``'s synthetic Zipf text (every word once,
the rest Zipf-distributed, seeded), so ``min_count 1`` gives exactly V words. Each cell trains one
epoch or ``--seconds`` of steady-state training (compilation excluded), skip-gram, dim 100 (or
``--dim``), window 5, negative 5, sample 1e-3, the default batch size of each strategy on the
device's backend (``config.py: default_batch_size``); ``1→N`` devices is the exact
data-parallel path (``run.parallelism = "data"``). ``--matmul-dtype bfloat16`` gives the
GEMM-shaped strategies (``batch``, ``full``) bfloat16 operands with float32 accumulation.

The roofline: the device's memory bandwidth (a streaming ``x * a + b`` over a large array) and
its f32 matmul rate are measured first. Per trained pair a strategy moves about 12·D bytes per
table row it touches (a gather reads the row, the scatter-add reads and writes it: 4 + 8 bytes
per float) and computes 6·D flops per dot product it takes (forward, and two products backward):

* ``pair``: 1 input row + 1 + K output rows, 1 + K dots;
* ``window``: per centre its c contexts (c ≈ window + 1 on average with dynamic windows), the
  centre and K noise rows: (c + 1 + K) / c rows and (1 + K) dots per pair;
* ``batch``: 2 rows per pair + S shared rows per batch, 1 + S dots per pair;
* ``hs`` (skip-gram's window-shared paths): 1 + L̄ / c rows and L̄ dots per pair, L̄ the
  frequency-weighted mean Huffman code length;
* ``full``: the whole V×D output table read twice and its gradient written per step (12·V·D/B
  bytes per pair) and V dots per pair;
* ``adaptive``: no hand model; XLA's cost analysis of its compiled step
  (``sgns_jax.engine.lowering.step_cost``: flops, and bytes as XLA counts them — an upper bound,
  since it counts a scatter into a table as the whole table).

The roofline time per pair is the larger of bytes / bandwidth and flops / matmul rate; each cell
prints the words/s it allows and the share of it reached. It is an upper bound from traffic
alone (launch overheads, the noise draw and atomics are not counted), so a share far below 1 says
where a fused kernel would pay.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vocab_scaling import make_corpus  # noqa: E402

STRATEGIES = {
    "pair": {"name": "ns", "negative_mode": "pair"},
    "window": {"name": "ns", "negative_mode": "window"},
    "batch": {"name": "ns", "negative_mode": "batch"},
    "hs": {"name": "hs"},
    "full": {"name": "full"},
    "adaptive": {"name": "adaptive"},
}
SETTINGS = dict(window=5, negative=5, sample=1e-3)
GEMM_STRATEGIES = ("batch", "full", "adaptive")  # whose products are matrix products (matmul_dtype)


def measure_device(size: int, matmul_n: int) -> dict:
    """Streaming bandwidth (bytes/s) and f32 matmul rate (flop/s) of the default device."""
    import jax
    import jax.numpy as jnp

    def best(f, *args) -> float:
        f(*args).block_until_ready()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            f(*args).block_until_ready()
            times.append(time.perf_counter() - t)
        return min(times)

    x = jnp.ones((size,), jnp.float32)
    bandwidth = 8 * size / best(jax.jit(lambda x: x * 1.0001 + 1.0), x)
    a = jnp.ones((matmul_n, matmul_n), jnp.float32)
    flops = 2 * matmul_n ** 3 / best(jax.jit(lambda a: a @ a), a)
    return {"device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
            "bandwidth_bytes_per_s": bandwidth, "matmul_flops_per_s": flops}


def traffic_per_pair(strategy: str, dim: int, vocab: int, batch_size: int, mean_code_length: float,
                     shared_samples: int) -> tuple[float, float]:
    """(bytes, flops) per trained pair under the model in the module docstring."""
    k, row, dot = SETTINGS["negative"], 12.0 * dim, 6.0 * dim
    if strategy == "pair":
        return (2 + k) * row, (1 + k) * dot
    if strategy == "window":
        c = SETTINGS["window"] + 1
        return (c + 1 + k) / c * row, (1 + k) * dot
    if strategy == "batch":
        return (2 + shared_samples / batch_size) * row, (1 + shared_samples) * dot
    if strategy == "hs":  # window-shared paths: the path's rows once per window of c pairs
        c = SETTINGS["window"] + 1
        return (1 + mean_code_length / c) * row, mean_code_length * dot
    return 12.0 * vocab * dim / batch_size + 2 * row, vocab * dot  # full


def run_cell(corpus, strategy: str, vocab: int, devices: int, args, machine: dict) -> dict:
    import numpy as np

    from sgns_jax.losses.huffman import huffman_codes
    from sgns_jax.config import TrainConfig
    from sgns_jax.train.loop import train

    cfg = TrainConfig().replace(
        data={"min_count": 1, "window": SETTINGS["window"], "sample": SETTINGS["sample"]},
        model={"dim": args.dim},
        loss={**STRATEGIES[strategy],
              **({"negative": SETTINGS["negative"]} if STRATEGIES[strategy]["name"] == "ns" else {}),
              **({"matmul_dtype": args.matmul_dtype} if strategy in GEMM_STRATEGIES else {})},
        run={"epochs": 1, "quiet": True, "max_seconds": args.seconds, "out": None,
             "parallelism": "single" if devices == 1 else "data", "devices": devices})
    result = train(cfg, corpus)
    counts = corpus.vocab.counts.astype(np.float64)
    mean_code_length = 0.0
    if strategy == "hs":
        mean_code_length = float((huffman_codes(corpus.vocab.counts).lengths * counts).sum() / counts.sum())
    batch_size = result.config.optim.batch_size  # the run records the batch it chose
    # Windows-layout examples are centres: about window + 1 pairs each (dynamic windows).
    pairs = result.examples * ((SETTINGS["window"] + 1) if strategy in ("window", "hs") else 1)
    words = result.corpus_tokens * result.words / max(result.epoch_words, 1)
    pairs_per_word = pairs / max(words, 1)
    if strategy == "adaptive":
        from sgns_jax.engine.lowering import step_cost

        cost = step_cost(result.config.replace(run={"parallelism": "single", "devices": 1}), corpus.vocab.counts)
        bytes_pp, flops_pp = cost.bytes_accessed, cost.flops
    else:
        bytes_pp, flops_pp = traffic_per_pair(strategy, args.dim, len(corpus.vocab), batch_size,
                                              mean_code_length, getattr(result.config.loss, "shared_samples", 0))
    # One device's roofline times the device count: data parallelism splits the pairs.
    seconds_pp = max(bytes_pp / machine["bandwidth_bytes_per_s"], flops_pp / machine["matmul_flops_per_s"])
    roofline = devices / (seconds_pp * pairs_per_word)
    return {"strategy": strategy, "vocab": len(corpus.vocab), "dim": args.dim, "devices": devices,
            "matmul_dtype": getattr(result.config.loss, "matmul_dtype", "float32"),
            "batch_size": batch_size, "words_per_s": result.words_per_second,
            "pairs_per_s": pairs / result.seconds if result.seconds else 0.0,
            "compile_s": result.compile_seconds, "train_s": result.seconds,
            "bytes_per_pair": bytes_pp, "flops_per_pair": flops_pp,
            "roofline_words_per_s": roofline, "share_of_roofline": result.words_per_second / roofline}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocabs", default="16000,71000,1000000")
    p.add_argument("--devices", default="1,all", help="device counts; 'all' = every local device")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--max-full-vocab", type=int, default=100_000,
                   help="skip the O(V) full softmax above this vocabulary")
    p.add_argument("--tokens", type=int, default=5_000_000)
    p.add_argument("--seconds", type=float, default=20.0, help="training budget per cell")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--matmul-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="operands of the batch and full strategies' matrix products")
    p.add_argument("--tiny", action="store_true", help="a seconds-long CPU configuration")
    p.add_argument("--out", help="write the rows here as JSON")
    args = p.parse_args(argv)
    if args.tiny:
        args.vocabs, args.tokens, args.seconds, args.dim, args.devices = "500", 10_000, 1.0, 16, "1,2"
    import jax

    counts = [c for c in args.devices.split(",") if c != "all"]
    if counts:  # only the CPU backend reads it; it must be set before any backend starts
        jax.config.update("jax_num_cpu_devices", max(map(int, counts)))
    from sgns_jax.data.corpus import encode_corpus

    machine = measure_device(1 << (22 if args.tiny else 26), 256 if args.tiny else 4096)
    print(f"{machine['device']} ({machine['platform']}): {machine['bandwidth_bytes_per_s'] / 1e9:,.1f} GB/s "
          f"streaming, {machine['matmul_flops_per_s'] / 1e12:,.2f} Tflop/s f32 matmul", flush=True)
    device_counts = sorted({jax.local_device_count() if c == "all" else int(c) for c in args.devices.split(",")})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for vocab in map(int, args.vocabs.split(",")):
            path = Path(tmp) / f"zipf-{vocab}.txt"
            make_corpus(path, args.tokens, vocab, args.seed)
            corpus = encode_corpus(str(path), min_count=1, cache_dir=tmp)
            for strategy in args.strategies.split(","):
                if strategy == "full" and vocab > args.max_full_vocab:
                    continue
                for devices in device_counts:
                    row = run_cell(corpus, strategy, vocab, devices, args, machine)
                    rows.append(row)
                    print(f"V={row['vocab']:>9,} {strategy:<7} {devices} dev  {row['words_per_s']:>12,.0f} words/s "
                          f"{row['pairs_per_s']:>13,.0f} pairs/s  roofline {row['roofline_words_per_s']:>14,.0f} "
                          f"words/s ({100 * row['share_of_roofline']:.1f}%)  {row['bytes_per_pair']:,.0f} B/pair",
                          flush=True)
                    if args.out:
                        Path(args.out).write_text(json.dumps({"machine": machine, "settings": SETTINGS,
                                                              "tokens": args.tokens, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
