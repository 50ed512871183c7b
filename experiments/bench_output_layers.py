"""Adaptive and differentiated softmax on mid.txt.gz beside the exact softmax and HS.

    python experiments/bench_output_layers.py --out docs/bench_output_layers.json     # ~40 min
    python experiments/bench_output_layers.py --quick --out /tmp/q.json               # < 1 min

For each vocabulary (V = 10k: the 10,000 most frequent words of the training split; V = 40k:
every word with count ≥ 5) on the comparison's splits of ``mid.txt.gz``
(``experiments/compare_losses.py``: every 20th stored sentence held out):

* ``adaptive`` and ``dsoftmax`` train 3 epochs at their defaults (one stream, lr 0.025) and are
  scored by their exact held-out −log p(c | w) beside the unigram baseline;
* ``full`` and ``hs`` train a time budget (``--budget-seconds``; the exact softmax cannot finish
  3 epochs at 40k words on this CPU) for their words/s;
* every strategy's words/s is steady-state training (compilation excluded), one stream, each
  strategy's own default batch;

over ``--seeds`` (two by default). ``--cutoff-rules`` adds one-epoch runs of adaptive softmax
with other cutoff rules at V = 40k (seed 0): the measurement behind the default.
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
ROOT = HERE.parent
MID = Path(os.environ.get("SGNS_JAX_MID", ROOT.parent / "shared" / "data" / "mid.txt.gz"))
COMPARE = runpy.run_path(str(HERE / "compare_losses.py"))

VOCABS = {"10k": {"min_count": 5, "max_vocab": 10000}, "40k": {"min_count": 5}}
EPOCHS = 3
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
        cfg["max_tokens"] = 200_000
    return cfg


def run(cfg: dict, data: dict, strategy: dict, seed: int, **run) -> dict:
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
    heldout = COMPARE["objectives"](strategy, data, "test")["heldout"](r.params)
    return {"heldout": heldout, "unigram": data["unigram"]["test"], "words": r.words,
            "epoch_fraction": r.words / (len(data["train"]) * cfg["epochs"]),
            "words_per_s": r.words_per_second, "seconds": r.seconds,
            "batch_size": r.config.optim.batch_size}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--budget-seconds", type=float, default=60.0)
    p.add_argument("--cutoff-rules", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    cfg = settings(args.quick)
    seeds = [int(s) for s in args.seeds.split(",")]
    vocabs = {"top1k": {"min_count": 3, "max_vocab": 1000}} if args.quick else VOCABS
    budget = 3.0 if args.quick else args.budget_seconds
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    rows = []
    started = time.time()
    for vocab, vsettings in vocabs.items():
        data = COMPARE["prepare"](cfg, vsettings)
        size = len(data["train"].vocab)
        plan = [("adaptive", {"name": "adaptive"}, {}), ("dsoftmax", {"name": "dsoftmax"}, {}),
                ("full", {"name": "full"}, {"max_seconds": budget}),
                ("hs", {"name": "hs"}, {"max_seconds": budget})]
        for label, strategy, budget_run in plan:
            for seed in seeds:
                row = {"vocab": vocab, "vocab_size": size, "strategy": label, "seed": seed,
                       **run(cfg, data, strategy, seed, **budget_run)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.cutoff_rules and vocab == list(vocabs)[-1]:
            counts = data["train"].vocab.counts
            for rule, make in CUTOFF_RULES.items():
                strategy = {"name": "adaptive", **({} if make is None else {"cutoffs": make(counts, size)})}
                row = {"vocab": vocab, "vocab_size": size, "strategy": "adaptive", "seed": 0,
                       "cutoff_rule": rule, "cutoffs": strategy.get("cutoffs"),
                       **run({**cfg, "epochs": 1}, data, strategy, 0)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {"command": "python experiments/bench_output_layers.py " + " ".join(argv or sys.argv[1:]),
               "corpus": "../shared/data/mid.txt.gz" if not args.quick else "sgns_jax/resources/wiki.txt.gz",
               "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "epochs": cfg["epochs"], "seconds": time.time() - started, "rows": rows}
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
