"""Data-parallel scaling: words/s and pairs/s at 1, 2, 4 and 8 devices.

    python experiments/perf/bench_scaling.py [--loss ns] [--negative-mode pair] [--epochs 1]

Each device count runs in its own process (the CPU device count is fixed when JAX starts:
``XLA_FLAGS=--xla_force_host_platform_device_count=N``). On a CPU machine the devices are
simulated on the same cores, so this measures the overhead of the collectives, not a speed-up;
on a GPU/TPU host it measures real scaling. Reported per run: words/s, pairs/s, step time, and
the bytes all-gathered per step on the sparse path (ids + row gradients, proportional to the
batch, not to V·D).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(args) -> dict:
    import jax
    import numpy as np

    from sgns_jax.data.batches import epoch_chunks
    from sgns_jax.evaluation.benchmarks import bundled
    from sgns_jax.config import TrainConfig
    from sgns_jax.train.build import batch_spec, build_layer, load_corpus
    from sgns_jax.train.loop import train

    cfg = TrainConfig().replace(
        data={"corpus": args.corpus or str(bundled("wiki.txt.gz"))},
        loss={"name": args.loss, **({"negative_mode": args.negative_mode} if args.loss == "ns" else {})},
        optim={"batch_size": args.batch_size},
        run={"epochs": args.epochs, "quiet": True, "devices": jax.device_count(),
             "parallelism": "data" if jax.device_count() > 1 else "single"})
    corpus = load_corpus(cfg)
    layer = build_layer(cfg, corpus.vocab.counts)
    spec = batch_spec(cfg, layer)
    t = time.perf_counter()
    pairs = sum(float(c.arrays["mask"].sum()) for c in epoch_chunks(corpus, spec, 0)) * args.epochs
    host_s = time.perf_counter() - t
    result = train(cfg, corpus)
    steps = sum(1 for _ in epoch_chunks(corpus, spec, 0)) * spec.steps_per_chunk * args.epochs
    # Rows exchanged per step: every looked-up row of each table (ids int32 + D float32).
    import jax.numpy as jnp
    batch = {k: jnp.asarray(v[0]) for k, v in next(iter(epoch_chunks(corpus, spec, 0))).arrays.items()
             if k != "words"}
    lookups = layer.lookups(batch, layer.sample_noise(jax.random.key(0), layer.batch_examples(batch)))
    rows = sum(int(np.prod(l.ids.shape)) for l in lookups.values() if l.ids is not None)
    return {"devices": jax.device_count(), "words_per_s": result.words_per_second,
            "pairs_per_s": pairs / result.seconds, "step_ms": 1e3 * result.seconds / steps,
            "host_batching_s": host_s, "train_s": result.seconds,
            "gathered_bytes_per_step": rows * (4 + 4 * cfg.model.dim)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus")
    p.add_argument("--loss", default="ns")
    p.add_argument("--negative-mode", default="pair")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return
    print(f"{'devices':>7} {'words/s':>10} {'pairs/s':>10} {'step ms':>8} {'bytes/step':>11}")
    for n in map(int, args.devices.split(",")):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        cmd = [sys.executable, __file__, "--child", "--loss", args.loss, "--negative-mode",
               args.negative_mode, "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
        if args.corpus:
            cmd += ["--corpus", args.corpus]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        r = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
        print(f"{r['devices']:>7} {r['words_per_s']:>10,.0f} {r['pairs_per_s']:>10,.0f} "
              f"{r['step_ms']:>8.2f} {r['gathered_bytes_per_step']:>11,}")


if __name__ == "__main__":
    main()
