"""Can a second core speed up one training run at a million words? Milliseconds per chunk of
four ways to use the devices, on the same chunks.

    python experiments/perf/ab_large_vocab_parallel.py [--vocab 1000000] [--dim 300] [--chunks 48]

The corpus is ``bench_vocab_scaling.py``'s synthetic Zipf text (2 M tokens, every word once,
``min_count 1``, sample 1e-3), window-shared NS at its CPU defaults (64 centres a step, 128 steps
a chunk). The first ``--chunks`` chunks of the epoch are built once and trained by:

* ``single``: one stream on one device (the default at this size);
* ``workers``: two worker streams (``engine/workers.py``): each trains its own replica, and every
  round the rows either touched are merged;
* ``vocab``: the tables' rows split over two devices (``--parallelism vocab``): each device
  gathers the rows it owns, a ``psum`` assembles them, both compute the whole step;
* ``columns``: the tables' *columns* split over two devices (defined here, not a runner: the
  chunk jitted with the tables sharded ``P(None, "model")``; XLA adds one all-reduce of the
  logits per step): every device touches every row, half its width.

Each way is its own process (the CPU devices must be requested before JAX starts), timed after
a warm-up chunk group. Reported: ms per chunk (wall), and user/system CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAYS = ["single", "workers", "vocab", "columns"]


def child(way: str, corpus: str, dim: int, chunks: int, cache: str) -> dict:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    sys.path.insert(0, str(ROOT))
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from sgns_jax.data.batches import epoch_chunks
    from sgns_jax.engine import runners
    from sgns_jax.train import build
    from sgns_jax.config import TrainConfig
    from sgns_jax.engine.step import chunk_steps

    class Columns(runners.SingleDevice):
        """The chunk jitted with both tables split by columns over two devices."""

        @classmethod
        def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
            mesh = jax.make_mesh((2,), ("model",), axis_types=(jax.sharding.AxisType.Auto,),
                                 devices=jax.devices()[:2])
            self = cls(jax.jit(chunk_steps(layer, rule, schedule), donate_argnums=(0,)), None)
            self.col, self.rep = NamedSharding(mesh, P(None, "model")), NamedSharding(mesh, P())
            self.root_key = jax.device_put(root_key_data, self.rep)
            return self

        def place(self, state):
            return state._replace(params={k: jax.device_put(v, self.col) for k, v in state.params.items()},
                                  step=jax.device_put(state.step, self.rep))

        def place_arrays(self, arrays):
            return {k: jax.device_put(v, self.rep) for k, v in arrays.items()}

    if way == "columns":  # built where the single-device runner would be
        runners.RUNNERS["single"] = Columns
    cfg = TrainConfig().replace(
        data={"corpus": corpus, "min_count": 1, "sample": 1e-3, "cache_dir": cache},
        model={"dim": dim}, run={"epochs": 1, "quiet": True,
                                 "parallelism": "single" if way == "columns" else way,
                                 "devices": 1 if way in ("single", "columns") else 2})
    run = build.build_run(cfg)
    group = run.runner.chunks_per_call
    arrays = []
    for i, c in enumerate(epoch_chunks(run.corpus, run.spec, 0)):
        if i >= chunks + group:
            break
        arrays.append(c.arrays)
    if len(arrays) < 2 * group:
        sys.exit(f"the corpus gives {len(arrays)} chunks; {way} needs {2 * group} (more --tokens)")
    state, _, _ = run.runner.run(run.state, arrays[:group])  # warm-up
    jax.block_until_ready(state)
    usage0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(group, len(arrays) - group + 1, group):
        state, _, _ = run.runner.run(state, arrays[i:i + group])
    jax.block_until_ready(state)
    wall, usage = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    timed = (len(arrays) - group) // group * group
    return {"way": way, "vocab": len(run.corpus.vocab), "dim": dim, "chunks": timed,
            "ms_per_chunk": 1e3 * wall / timed, "user_s": usage.ru_utime - usage0.ru_utime,
            "sys_s": usage.ru_stime - usage0.ru_stime, "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=300)
    p.add_argument("--tokens", type=int, default=2_000_000)
    p.add_argument("--chunks", type=int, default=48)
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--out", help="write the rows here as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.corpus, args.dim, args.chunks, args.cache)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_vocab_scaling import make_corpus

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "zipf.txt"
        make_corpus(corpus, args.tokens, args.vocab, 0)
        for way in args.ways.split(","):
            cmd = [sys.executable, __file__, "--child", way, "--corpus", str(corpus), "--dim", str(args.dim),
                   "--chunks", str(args.chunks), "--cache", tmp]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{way} failed:\n{r.stderr[-3000:]}")
            row = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
            rows.append(row)
            print(f"{way:<8} V={row['vocab']:,} D={row['dim']}: {row['ms_per_chunk']:6.1f} ms per chunk "
                  f"({row['ms_per_chunk'] / rows[0]['ms_per_chunk']:.2f}x single), CPU {row['user_s']:.1f} s user "
                  f"+ {row['sys_s']:.1f} s system over {row['wall_s']:.1f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"tokens": args.tokens, "machine": machine(), "rows": rows}, indent=1))


def machine() -> str:
    """The CPU model and core count, for the record."""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


if __name__ == "__main__":
    main()
