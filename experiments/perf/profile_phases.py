"""Where a run's end-to-end time goes: seconds per phase of one ``train()`` call.

    python experiments/perf/profile_phases.py CORPUS [--dim 300] [--min-count 1] [--sample 1e-3]
                                         [--epochs 1] [--loss window|pair|hs] [--workers 1]
                                         [--binary] [--out docs/profile_phases.json]

Phases: importing JAX and sgns_jax, encoding the corpus (scan, vocabulary, ids; no cache), the
output layer (Huffman tree or alias table), initialising the tables (waited for), compiling the
chunk, training (the loop's own clock), and writing the outputs (vectors, .npz, config). Each
phase is timed by wrapping the function that does it, so the run is the ordinary one. For the
1M-word synthetic corpus of ``bench_vocab_scaling.py`` (its ``make_corpus``), pass ``--zipf
1000000`` instead of a corpus path; it is written to a temporary file first.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sgns_jax.engine import runners, workers  # noqa: E402
from sgns_jax.train import build, loop  # noqa: E402
from sgns_jax.config import TrainConfig  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def timed(seconds: dict, module, name: str, phase: str, block: bool = False) -> None:
    f = getattr(module, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = f(*args, **kwargs)
        if block:
            jax.block_until_ready(out)
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - t
        return out

    setattr(module, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?")
    p.add_argument("--zipf", type=int, help="generate bench_vocab_scaling's corpus with this many words")
    p.add_argument("--tokens", type=int, default=2_000_000, help="with --zipf")
    p.add_argument("--dim", type=int, default=300)
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--loss", choices=["window", "pair", "hs"], default="window")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--binary", action="store_true")
    p.add_argument("--out", help="append the result here as a JSON line")
    args = p.parse_args()
    seconds: dict[str, float] = {}
    timed(seconds, build, "load_corpus", "corpus")
    timed(seconds, build, "build_layer", "output layer")
    timed(seconds, build, "init_params", "table init", block=True)
    timed(seconds, loop, "write_outputs", "write outputs")
    for cls in (runners.SingleDevice, runners.Workers):
        timed(seconds, cls, "compile", "compile")
    loss = {"window": {"name": "ns", "negative_mode": "window"},
            "pair": {"name": "ns", "negative_mode": "pair"}, "hs": {"name": "hs"}}[args.loss]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if args.zipf:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_vocab_scaling import make_corpus

            corpus = str(Path(tmp) / "zipf.txt")
            make_corpus(Path(corpus), args.tokens, args.zipf, 0)
        if not corpus:
            p.error("give a CORPUS or --zipf")
        cfg = TrainConfig().replace(
            data={"corpus": corpus, "min_count": args.min_count, "cache_dir": "", "sample": args.sample},
            model={"dim": args.dim}, loss=loss,
            run={"epochs": args.epochs, "quiet": True, "out": str(Path(tmp) / ("v.bin" if args.binary else "v.txt")),
                 "binary": args.binary, "parallelism": "workers" if args.workers > 1 else "single",
                 "devices": args.workers})
        t = time.perf_counter()
        result = loop.train(cfg)
        total = time.perf_counter() - t + IMPORT_S
    seconds["training"] = result.seconds
    seconds = {"import": IMPORT_S, **seconds}
    seconds["other"] = total - sum(seconds.values())
    row = {"corpus": args.corpus or f"zipf {args.zipf} words, {args.tokens} tokens", "vocab": len(result.vocab),
           "dim": args.dim, "loss": args.loss, "workers": args.workers, "epochs": args.epochs,
           "total_s": total, "seconds": seconds,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for phase, s in seconds.items():
        print(f"{phase:<14} {s:7.2f} s  {100 * s / total:5.1f}%")
    print(f"{'total':<14} {total:7.2f} s   peak RSS {row['peak_rss_mb']:,.0f} MB, {len(result.vocab):,} words")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
