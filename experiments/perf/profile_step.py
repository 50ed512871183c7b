"""Where a training step's time goes: the compiled chunk's ops, timed by the JAX profiler.

    python experiments/perf/profile_step.py [--mode pair|window|batch|hs|all] [--chunks 20] [--batch B]

Builds real chunks from the bundled corpus with the benchmark's settings (dim 100, window 5,
negative 5, sample 1e-4, min_count 5, default batch sizes), times the jitted chunk (ns per
trained pair), then traces a few chunks with ``jax.profiler`` and sums each XLA op's time.
Every op is named with the JAX operation it comes from (the ``op_name`` metadata of the
compiled HLO: ``scatter-add``, ``gather``, ``dot_general``, ``threefry`` loops, ...). The
per-op times can add up to more than the wall time: XLA:CPU runs independent ops of a step
(the noise draw, the two tables' gathers) on both cores at once.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sgns_jax.data.batches import epoch_chunks  # noqa: E402
from sgns_jax.evaluation.benchmarks import bundled  # noqa: E402
from sgns_jax.train import build as loop  # noqa: E402
from sgns_jax.config import TrainConfig  # noqa: E402
from sgns_jax.engine.step import chunk_steps, init_params, init_state  # noqa: E402
from sgns_jax.engine.updates import make_update_rule  # noqa: E402

MODES = {
    "pair": {"name": "ns", "negative_mode": "pair"},
    "window": {"name": "ns", "negative_mode": "window"},
    "batch": {"name": "ns", "negative_mode": "batch", "shared_samples": 16},
    "hs": {"name": "hs"},
}


def op_sources(hlo_text: str) -> dict[str, str]:
    """HLO instruction name → its result shape and the JAX operation it comes from (the
    instruction's ``op_name`` metadata without the scan's prefix; the opcode if it has none)."""
    out = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\(.*$", hlo_text, re.M):
        name, shape, opcode = m.groups()
        if shape.startswith("("):  # a tuple (loops): name its largest part
            shape = max(re.findall(r"\w+\[[\d,]*\]", shape), key=len, default=shape)
        op = re.search(r'op_name="([^"]*)"', m.group(0))
        source = op.group(1) if op else opcode
        for prefix in ("jit(chunk)/", "while/body/", "closed_call/"):
            source = source.replace(prefix, "")
        out[name] = f"{shape.split('{')[0]:<20} {source}"
    return out


def profile(mode: str, n_chunks: int, top: int, batch_size: int | None = None) -> dict:
    cfg = TrainConfig().replace(
        data={"corpus": str(bundled("wiki.txt.gz")), "sample": 1e-4, "min_count": 5}, loss=MODES[mode],
        optim={"batch_size": batch_size})
    corpus = loop.load_corpus(cfg)
    layer = loop.build_layer(cfg, corpus.vocab.counts)
    spec = loop.batch_spec(cfg, layer)
    rule = make_update_rule("sgd", "sparse")
    chunks = list(epoch_chunks(corpus, spec, 0))[:-1][:n_chunks]  # full chunks only
    fn = jax.jit(chunk_steps(layer, rule, loop.make_schedule(cfg, 5 * len(corpus))), donate_argnums=(0,))
    init_key, root_key = jax.random.split(jax.random.key(0))
    state = init_state(init_params(layer, len(corpus.vocab), 100, init_key), rule)
    key = jax.random.key_data(root_key)
    device_chunks = [jax.device_put(c.arrays) for c in chunks]
    sources = op_sources(fn.lower(state, device_chunks[0], key).compile().as_text())
    state, _, _ = fn(state, device_chunks[0], key)
    jax.block_until_ready(state)

    pairs = sum(float(c.arrays["mask"].sum()) for c in chunks)
    t = time.perf_counter()
    for arrays in device_chunks:
        state, _, _ = fn(state, arrays, key)
    jax.block_until_ready(state)
    wall = time.perf_counter() - t
    steps = len(chunks) * spec.steps_per_chunk

    traced = device_chunks[: max(1, len(device_chunks) // 2)]
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        for arrays in traced:
            state, _, _ = fn(state, arrays, key)
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        trace = sorted(glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True))[-1]
        events = json.load(gzip.open(trace))["traceEvents"]
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in sources:
            per_op[e["name"]] += e["dur"]  # µs
    traced_steps = len(traced) * spec.steps_per_chunk
    print(f"\n{mode}: {spec.layout} batches of {spec.batch_size} × {spec.steps_per_chunk} steps, "
          f"{pairs / steps:,.0f} pairs per step; {wall / pairs * 1e9:,.0f} ns per pair, "
          f"{wall / steps * 1e6:,.0f} µs per step (wall)")
    print(f"  {'µs/step':>8} {'ns/pair':>8}  {'XLA op':<26} {'result':<20} from")
    ops = []
    for name, us in per_op.most_common(top):
        per_step = us / traced_steps
        ops.append({"op": name, "source": sources[name], "us_per_step": per_step})
        print(f"  {per_step:>8.1f} {per_step * 1e3 * steps / pairs:>8.0f}  {name:<26} {sources[name]}")
    return {"mode": mode, "batch": spec.batch_size, "ns_per_pair": wall / pairs * 1e9,
            "us_per_step": wall / steps * 1e6, "ops": ops}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="all", choices=["all", *MODES])
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--batch", type=int, help="rows per step (default: the mode's default)")
    p.add_argument("--out", help="write the profiles here as JSON")
    args = p.parse_args()
    results = [profile(m, args.chunks, args.top, args.batch)
               for m in (MODES if args.mode == "all" else [args.mode])]
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
