"""One prepared check for the first GPU/TPU host: what the device is, what it measures, and what
every strategy does on it, into one JSON and one Markdown table.

    experiments/device_check.sh                 # on a GPU/TPU host: installs, then runs this
    python experiments/perf/device_check.py --out-dir device_check   # the driver alone
    python experiments/perf/device_check.py --tiny --out-dir /tmp/dc  # seconds, on the CPU (tests)

Sections, in order (each cell that fails is recorded with its one-line error, and the rest go
on; past ``--budget-seconds`` the remaining cells are recorded as skipped):

1. the device: platform, kind, count, jax and jaxlib versions; streaming bandwidth and matmul
   rate in float32 and bfloat16 (``bench_gpu.measure_device``);
2. lowering: the chunk of every strategy exported for the device's platform
   (``sgns_jax.engine.lowering``): custom calls, donation;
3. throughput cells (``bench_gpu.run_cell``): strategies window, pair, batch, hs, full (at the
   smaller vocabulary only), adaptive softmax, at V = 71k and 1M, on 1 device and on all,
   float32 and bfloat16 where the strategy has matrix products; each with XLA's flops and bytes
   per pair of its compiled step on this device (``step_cost``);
4. quality and the pipelines: one epoch of ``mid.txt.gz`` (``--corpus``; ``SGNS_JAX_MID`` or
   ``../shared/data/mid.txt.gz``) with its words/s, analogy accuracy and WS-353 Spearman, three
   times: the defaults (host batches, every device), host batches on one device, and batches
   made on the device (``--pipeline device``, one device) — the two one-device runs are the
   host-vs-device pipeline comparison that sets the accelerators' default.

Time: about 5 minutes of an H100-class host after installation (15 cells of ``--seconds 8``
plus their compilations, three epochs of mid, ~1 minute of lowering); ``--budget-seconds`` (default
420) stops it in time whatever happens. Outputs: ``device_check.json`` (everything) and
``device_check.md`` (the tables) in ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_gpu import GEMM_STRATEGIES, STRATEGIES, measure_device, run_cell  # noqa: E402
from bench_vocab_scaling import make_corpus  # noqa: E402

ROOT = HERE.parents[1]


class Check:
    """Cells run one after another, each recorded whatever happens to it, within a deadline."""

    def __init__(self, out_dir: Path, budget_seconds: float):
        self.out_dir, self.deadline = out_dir, time.monotonic() + budget_seconds
        self.start = time.monotonic()
        self.result: dict = {"sections": {}}

    def cell(self, section: str, name: str, fn, *args, **kwargs) -> dict | None:
        rows = self.result["sections"].setdefault(section, [])
        elapsed = time.monotonic() - self.start
        if time.monotonic() > self.deadline:
            rows.append({"cell": name, "status": "skipped", "error": "time budget spent"})
            print(f"[{elapsed:5.0f} s] {section}/{name}: skipped (time budget spent)", flush=True)
            self.save()
            return None
        print(f"[{elapsed:5.0f} s] {section}/{name} ...", flush=True)
        t = time.monotonic()
        try:
            row = {"cell": name, "status": "ok", **fn(*args, **kwargs)}
        except Exception as e:  # a failing cell is a result; the check goes on
            line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            row = {"cell": name, "status": "failed", "error": line,
                   "traceback": traceback.format_exc(limit=3)}
            print(f"    failed: {line}", flush=True)
        row["seconds"] = time.monotonic() - t
        rows.append(row)
        self.save()
        return row

    def save(self) -> None:
        self.result["elapsed_s"] = time.monotonic() - self.start
        (self.out_dir / "device_check.json").write_text(json.dumps(self.result, indent=1, default=str))
        (self.out_dir / "device_check.md").write_text(markdown(self.result))


def device_info() -> dict:
    import jax
    import jaxlib

    devices = jax.devices()
    return {"platform": jax.default_backend(), "device_kind": devices[0].device_kind,
            "device_count": len(devices), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "python": platform.python_version(), "host": platform.node(), "machine": platform.machine()}


def rates(tiny: bool) -> dict:
    import jax
    import jax.numpy as jnp

    machine = measure_device(1 << (22 if tiny else 28), 256 if tiny else 8192)
    n = 256 if tiny else 8192
    a = jnp.ones((n, n), jnp.bfloat16)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(5):
        f(a).block_until_ready()
    machine["matmul_bf16_flops_per_s"] = 5 * 2 * n ** 3 / (time.perf_counter() - t)
    return machine


def lowering(strategy: str) -> dict:
    import jax
    import numpy as np

    from sgns_jax.config import TrainConfig
    from sgns_jax.engine.lowering import export_chunk, inspect_module

    cfg = TrainConfig().replace(loss=dict(STRATEGIES[strategy]), model={"dim": 100},
                                run={"parallelism": "single", "devices": 1})
    module = inspect_module(export_chunk(cfg, np.arange(5000, 0, -1), platforms=(jax.default_backend(),)))
    return {"custom_calls": sorted(module.custom_calls), "donated": list(module.donated_params),
            "params": list(module.params), "dynamic_shapes": module.dynamic_shapes}


def throughput(corpus, strategy: str, vocab: int, devices: int, dtype: str, args, machine: dict) -> dict:
    from sgns_jax.config import TrainConfig
    from sgns_jax.engine.lowering import step_cost

    cell_args = argparse.Namespace(dim=args.dim, seconds=args.seconds, matmul_dtype=dtype)
    row = run_cell(corpus, strategy, vocab, devices, cell_args, machine)
    dtype_option = {"matmul_dtype": dtype} if strategy in GEMM_STRATEGIES else {}
    cfg = TrainConfig().replace(
        loss={**STRATEGIES[strategy], **dtype_option}, model={"dim": args.dim},
        data={"window": 5, "sample": 1e-3}, run={"parallelism": "single", "devices": 1})
    try:
        cost = step_cost(cfg, corpus.vocab.counts)
        row.update(xla_flops_per_example=cost.flops, xla_bytes_per_example=cost.bytes_accessed)
    except ValueError as e:  # a step with a loop: no count rather than a wrong one
        row.update(xla_cost_error=str(e))
    return row


def quality(path: str, args, pipeline: str = "host", parallelism: str | None = None) -> dict:
    from sgns_jax.config import TrainConfig
    from sgns_jax.data.corpus import encode_corpus
    from sgns_jax.evaluation.benchmarks import WORDSIM, bundled, evaluate_analogies, evaluate_word_pairs
    from sgns_jax.evaluation.embeddings import Embeddings
    from sgns_jax.train.loop import train

    corpus = encode_corpus(path, min_count=5, cache_dir=args.cache_dir)
    if args.tiny:
        corpus = corpus.head(100_000)
    result = train(TrainConfig().replace(data={"pipeline": pipeline},
                                         run={"epochs": 1, "quiet": True, "out": None,
                                              "parallelism": parallelism}), corpus)
    emb = Embeddings(corpus.vocab.words, result.params["w_in"])
    analogy = evaluate_analogies(emb, restrict_vocab=30000)
    ws = evaluate_word_pairs(emb, bundled(WORDSIM), restrict_vocab=None)
    return {"corpus": os.path.relpath(path, ROOT), "tokens": len(corpus), "words_per_s": result.words_per_second,
            "train_s": result.seconds, "compile_s": result.compile_seconds,
            "loss": result.config.loss.name, "parallelism": result.config.run.parallelism,
            "pipeline": pipeline,
            "analogy": analogy.accuracy, "analogy_answered": analogy.answered,
            "wordsim353": ws.spearman}


def markdown(result: dict) -> str:
    info = result.get("device", {})
    lines = ["# Device check", "",
             f"Device: {info.get('device_kind', '?')} × {info.get('device_count', '?')} "
             f"({info.get('platform', '?')}); jax {info.get('jax', '?')}, jaxlib {info.get('jaxlib', '?')}; "
             f"elapsed {result.get('elapsed_s', 0):.0f} s.", ""]
    for section, rows in result["sections"].items():
        lines += [f"## {section}", ""]
        keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("traceback",)]
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v).replace("|", "/")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--vocabs", default="71000,1000000")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--max-full-vocab", type=int, default=100_000)
    p.add_argument("--tokens", type=int, default=5_000_000)
    p.add_argument("--seconds", type=float, default=8.0, help="steady-state training per cell")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--budget-seconds", type=float, default=420.0, help="stop starting cells after this")
    p.add_argument("--corpus", default=os.environ.get("SGNS_JAX_MID", str(ROOT.parent / "shared" / "data" / "mid.txt.gz")))
    p.add_argument("--tiny", action="store_true", help="a CPU run of seconds (what the tests run)")
    args = p.parse_args(argv)
    if args.tiny:
        args.vocabs, args.tokens, args.seconds, args.dim = "500", 20_000, 0.5, 16
        args.strategies = "pair,hs,full"
        # The bundled corpus whatever --corpus says: the tests never read ../shared.
        args.corpus = str(ROOT / "sgns_jax" / "resources" / "wiki.txt.gz")
    import jax

    if args.tiny:
        jax.config.update("jax_num_cpu_devices", 2)
    from sgns_jax.data.corpus import encode_corpus

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check = Check(out_dir, args.budget_seconds)
    check.result["device"] = device_info()
    check.result["settings"] = vars(args)
    check.save()
    machine = check.cell("device", "bandwidth and matmul rates", rates, args.tiny) or {}
    strategies = args.strategies.split(",")
    for s in strategies:
        check.cell("lowering", s, lowering, s)
    device_counts = sorted({1, jax.local_device_count()})
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = tmp
        for vocab in map(int, args.vocabs.split(",")):
            path = Path(tmp) / f"zipf-{vocab}.txt"
            make_corpus(path, args.tokens, vocab, 0)
            corpus = encode_corpus(str(path), min_count=1, cache_dir=tmp)
            for s in strategies:
                if s == "full" and vocab > args.max_full_vocab:
                    continue
                dtypes = ["float32", "bfloat16"] if s in GEMM_STRATEGIES else ["float32"]
                for dtype in dtypes:
                    for devices in device_counts:
                        check.cell("throughput", f"{s} V={vocab} {devices} dev {dtype}", throughput,
                                   corpus, s, vocab, devices, dtype, args, machine)
        # The throughput cells' batches come from the host pipeline; the quality runs compare
        # it with batches made on the device, on one device (the device pipeline's mode).
        runs = [("1 epoch", "host", None), ("1 epoch, device pipeline, 1 device", "device", "single")]
        if not args.tiny:
            runs.insert(1, ("1 epoch, host pipeline, 1 device", "host", "single"))
        for name, pipeline, parallelism in runs:
            if Path(args.corpus).exists():
                check.cell("quality", name, quality, args.corpus, args, pipeline, parallelism)
            else:
                check.result["sections"].setdefault("quality", []).append(
                    {"cell": name, "status": "skipped", "error": f"no corpus at {args.corpus}"})
    check.save()
    print(f"wrote {out_dir / 'device_check.json'} and {out_dir / 'device_check.md'} "
          f"({check.result['elapsed_s']:.0f} s)", flush=True)
    return check.result


if __name__ == "__main__":
    main()
