"""Adaptive and differentiated softmax on mid.txt.gz beside the exact softmax and HS.

    python experiments/research/bench_output_layers.py --parts step,speed,cutoffs --out docs/bench_output_layers.json  # ~35 min
    python experiments/research/bench_output_layers.py --parts epochs --out docs/bench_output_layers_epochs.json     # ~2 h
    # or the two strategies side by side, one per core:
    python experiments/research/bench_output_layers.py --parts epochs --strategies adaptive --out docs/bench_output_layers_epochs_adaptive.json
    python experiments/research/bench_output_layers.py --quick --out /tmp/q.json                                     # < 1 min
    python experiments/research/bench_output_layers.py --report docs/bench_output_layers*.json > docs/bench_output_layers.md

Parts (``--parts``), each a list of rows in the output:

* ``step`` — microseconds per pair of one jitted chunk (32 steps, each strategy's default batch,
  D = 100) on a synthetic Zipf vocabulary of 10k and 40k words, one stream, 3 repeats: the
  step's cost alone, without the data pipeline;
* ``speed`` — on the comparison's splits of ``mid.txt.gz`` (``experiments/research/compare_losses.py``:
  every 20th stored sentence held out) at V = 10k (the 10,000 most frequent words of the
  training split) and V = 40k (every word with count ≥ 5): every strategy trains a time budget
  (``--budget-seconds`` of steady state, one stream, its default batch, lr 0.025) over
  ``--seeds``: words/s;
* ``epochs`` — adaptive and differentiated softmax train 3 epochs at V = 40k with the defaults
  ``sgns-jax train mid.txt.gz --loss adaptive`` takes (one stream: the default for output layers
  that read a leaf whole), seed 0, scored on the held-out split beside the unigram baseline;
* ``cutoffs`` — adaptive softmax's default cutoffs against other rules at V = 40k, each
  training the same ``--cutoff-words`` (its schedule spanning them), seed 0: held-out −log p
  and words/s, the measurement behind the default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MID = Path(os.environ.get("SGNS_JAX_MID", ROOT.parent / "shared" / "data" / "mid.txt.gz"))
COMPARE = runpy.run_path(str(HERE / "compare_losses.py"))

VOCABS = {"10k": {"min_count": 5, "max_vocab": 10000}, "40k": {"min_count": 5}}
EPOCHS = 3
PARTS = ("step", "speed", "epochs", "cutoffs")
STRATEGIES = {"adaptive": {"name": "adaptive"}, "dsoftmax": {"name": "dsoftmax"},
              "full": {"name": "full"}, "hs": {"name": "hs"}}
CUTOFF_RULES = {  # label: cutoffs as a function of (counts, V)
    "coverage 80/95% (default)": None,
    "V/20, V/5": lambda counts, v: (v // 20, v // 5),
    "one tail at 90%": lambda counts, v: (int(np.searchsorted(np.cumsum(counts) / counts.sum(), 0.9)) + 1,),
    "coverage 80/95/99%": lambda counts, v: tuple(
        int(np.searchsorted(np.cumsum(counts) / counts.sum(), f)) + 1 for f in (0.8, 0.95, 0.99)),
}


def settings(quick: bool) -> dict:
    cfg = COMPARE["load_config"](None, quick)
    cfg.update(corpus=None if quick else str(MID), epochs=1 if quick else EPOCHS,
               heldout_pairs=2000 if quick else 20000)
    if quick:
        cfg["max_tokens"] = 50_000  # the tests run it: the epochs part trains two slow layers
    return cfg


def step_cost(strategy: dict, vocab: int, repeats: int = 3, dim: int = 100, steps: int = 32) -> dict:
    """Microseconds per pair (or window) of one jitted chunk on a synthetic Zipf vocabulary."""
    import jax

    from sgns_jax.config import TrainConfig
    from sgns_jax.engine.step import chunk_steps, init_params, init_state
    from sgns_jax.engine.updates import make_update_rule
    from sgns_jax.train.build import batch_spec, build_layer, make_schedule

    counts = (1e7 / np.arange(1, vocab + 1)).astype(np.int64)
    cfg = TrainConfig().replace(loss=strategy, model={"dim": dim}, run={"parallelism": "single"})
    layer = build_layer(cfg, counts)
    batch = batch_spec(cfg, layer).batch_size
    rule = make_update_rule("sgd", "sparse")
    fn = jax.jit(chunk_steps(layer, rule, make_schedule(cfg, 10**9)), donate_argnums=(0,))
    state = init_state(init_params(layer, vocab, dim, jax.random.key(0)), rule)
    rng = np.random.default_rng(0)
    p = counts / counts.sum()
    draw = lambda shape: rng.choice(vocab, size=shape, p=p).astype(np.int32)
    if layer.layout == "pairs":
        arrays = {"input": draw((steps, batch)), "output": draw((steps, batch)),
                  "mask": np.ones((steps, batch), np.float32)}
        pairs = steps * batch
    else:
        c = 10
        arrays = {"centre": draw((steps, batch)), "context": draw((steps, batch, c)),
                  "mask": np.ones((steps, batch, c), np.float32)}
        pairs = steps * batch * c
    arrays["words"] = np.zeros(steps, np.float32)
    key = jax.random.key_data(jax.random.key(1))
    state, _, _ = fn(state, arrays, key)  # compile
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        state, _, _ = fn(state, arrays, key)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - t) / pairs * 1e6)
    return {"describe": layer.describe(), "batch_size": batch, "us_per_pair": float(np.mean(times)),
            "us_per_pair_std": float(np.std(times, ddof=1)) if repeats > 1 else 0.0}


def run(cfg: dict, data: dict, strategy: dict, seed: int, score: bool = True, **run) -> dict:
    from sgns_jax.errors import TrainingDiverged
    from sgns_jax.config import TrainConfig
    from sgns_jax.train.loop import train

    config = TrainConfig().replace(
        data={"corpus": "<in memory>", "window": cfg["window"], "sample": cfg["sample"]},
        model={"dim": cfg["dim"]}, loss=strategy,
        run={"epochs": cfg["epochs"], "seed": seed, "quiet": True, "parallelism": "single", **run})
    try:
        r = train(config, data["train"])
    except TrainingDiverged as e:
        return {"diverged": str(e)}
    scores = ({"heldout": COMPARE["objectives"](strategy, data, "test")["heldout"](r.params),
               "unigram": data["unigram"]["test"]} if score else {})
    return {**scores, "words": r.words,
            "epoch_fraction": r.words / (len(data["train"]) * cfg["epochs"]),
            "words_per_s": r.words_per_second, "seconds": r.seconds,
            "batch_size": r.config.optim.batch_size, "parallelism": r.config.run.parallelism,
            "devices": r.config.run.devices}


def report(paths: list[str]) -> str:
    """Markdown tables of the rows in these output files (each part's cells: mean ± std over
    seeds), with each file's command and commit."""
    files = [json.loads(Path(x).read_text()) for x in paths]
    lines = ["Generated by `python experiments/research/bench_output_layers.py --report " + " ".join(paths)
             + "` from:", ""]
    lines += [f"* `{f['command']}` (commit {f['commit']}, {f['machine']}, corpus "
              f"`{f['corpus']}`, {f['seconds'] / 60:.0f} min)" + (f" — {f['note']}" if "note" in f else "")
              for f in files]
    rows = [r for f in files for r in f["rows"]]

    def cell(values: list[float], fmt: str) -> str:
        return format(np.mean(values), fmt) + (f" ± {np.std(values, ddof=1):{fmt}}" if len(values) > 1 else "")

    def group(part: str, key) -> dict:
        out: dict = {}
        for r in rows:
            if r["part"] == part and "diverged" not in r:
                out.setdefault(key(r), []).append(r)
        return out

    step = group("step", lambda r: (r["vocab_size"], r["strategy"]))
    if step:
        lines += ["", "**Step cost** (µs per pair, one jitted chunk of 32 steps, D = 100, synthetic Zipf "
                  "vocabulary, 3 repeats):", "", "| V | strategy | µs/pair | batch |", "|---|---|---|---|"]
        lines += [f"| {v:,} | {s} | {cell([x['us_per_pair'] for x in rs], '.1f')} | {rs[0]['batch_size']} |"
                  for (v, s), rs in step.items()]
    speed = group("speed", lambda r: (r["vocab_size"], r["strategy"]))
    if speed:
        lines += ["", "**Speed** (words/s on the training split of mid.txt.gz, one stream, over the seeds):",
                  "", "| V | strategy | words/s | seeds |", "|---|---|---|---|"]
        lines += [f"| {v:,} | {s} | {cell([x['words_per_s'] for x in rs], ',.0f')} | {len(rs)} |"
                  for (v, s), rs in speed.items()]
    for part, title in (("epochs", f"**{EPOCHS} epochs** with the CLI's defaults"),
                        ("cutoffs", "**Adaptive softmax's cutoff rules** at equal words")):
        cells = [r for r in rows if r["part"] == part]
        if not cells:
            continue
        lines += ["", f"{title} (held-out −log p(c | w) in nats on the held-out split; unigram: the "
                  "context-free baseline):", "",
                  "| V | strategy | cutoffs | words trained | held-out | unigram | words/s | parallelism |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in cells:
            if "diverged" in r:
                lines.append(f"| {r['vocab_size']:,} | {r['strategy']} | {r.get('cutoff_rule', '')} | "
                             f"diverged: {r['diverged']} | | | | |")
                continue
            lines.append(f"| {r['vocab_size']:,} | {r['strategy']} | {r.get('cutoff_rule', 'default')} "
                         f"{r.get('cutoffs') or ''} | {r['words']:,} | {r['heldout']:.3f} | "
                         f"{r['unigram']:.3f} | {r['words_per_s']:,.0f} | {r['parallelism']} × {r['devices']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the rows here as JSON")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print Markdown tables of these outputs and stop")
    p.add_argument("--parts", default="step,speed,cutoffs", help=f"any of {', '.join(PARTS)}")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--budget-seconds", type=float, default=60.0)
    p.add_argument("--cutoff-words", type=int, default=700_000,
                   help="words each cutoff rule trains (the schedule spans them)")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"a subset of {', '.join(STRATEGIES)} (epochs trains adaptive and dsoftmax only)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report), end="")
        return
    if not args.out:
        p.error("--out is required")
    strategies = {k: STRATEGIES[k] for k in args.strategies.split(",")}
    parts = args.parts.split(",")
    cfg = settings(args.quick)
    seeds = [int(s) for s in args.seeds.split(",")]
    vocabs = {"top1k": {"min_count": 3, "max_vocab": 1000}} if args.quick else VOCABS
    budget = 1.0 if args.quick else args.budget_seconds
    cutoff_words = 8_000 if args.quick else args.cutoff_words
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    rows = []
    started = time.time()

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    if "step" in parts:
        for size in ([1000] if args.quick else [10000, 40000]):
            for label, strategy in strategies.items():
                record({"part": "step", "vocab_size": size, "strategy": label,
                        **step_cost(strategy, size, repeats=2 if args.quick else 3)})
    for vocab, vsettings in vocabs.items():
        if not {"speed", "epochs", "cutoffs"} & set(parts):
            break
        last = vocab == list(vocabs)[-1]
        if "speed" not in parts and not last:
            continue  # epochs and cutoffs run at the largest vocabulary only
        data = COMPARE["prepare"](cfg, vsettings)
        size = len(data["train"].vocab)
        base = {"vocab": vocab, "vocab_size": size}
        if "speed" in parts:
            for label, strategy in strategies.items():
                for seed in seeds:
                    # words/s only: a run stopped by the clock is scored mid-schedule (its rate
                    # still high), which says nothing of the strategy; held-out scores come
                    # from runs whose schedule spans what they train (epochs, cutoffs)
                    record({"part": "speed", **base, "strategy": label, "seed": seed,
                            **run(cfg, data, strategy, seed, score=False, max_seconds=budget)})
        if "epochs" in parts and last:
            for label in [k for k in ("adaptive", "dsoftmax") if k in strategies]:  # the CLI's defaults
                record({"part": "epochs", **base, "strategy": label, "seed": 0,
                        **run(cfg, data, STRATEGIES[label], 0, parallelism=None)})
        if "cutoffs" in parts and last and "adaptive" in strategies:
            counts = data["train"].vocab.counts
            for rule, make in CUTOFF_RULES.items():
                strategy = {"name": "adaptive", **({} if make is None else {"cutoffs": make(counts, size)})}
                record({"part": "cutoffs", **base, "strategy": "adaptive", "seed": 0,
                        "cutoff_rule": rule, "cutoffs": strategy.get("cutoffs"),
                        **run(cfg, data, strategy, 0, max_words=cutoff_words)})
    summary = {"command": "python experiments/research/bench_output_layers.py " + " ".join(argv or sys.argv[1:]),
               "corpus": "sgns_jax/resources/wiki.txt.gz" if args.quick else "../shared/data/mid.txt.gz",
               "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "epochs": cfg["epochs"], "budget_seconds": budget, "seconds": time.time() - started,
               "rows": rows}
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
