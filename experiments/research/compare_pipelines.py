"""Batches made on the host vs on the device: quality (paired by seed) and words/s.

    python experiments/research/compare_pipelines.py [--corpus ../shared/data/mid.txt.gz]
        [--seeds 0,1,2,3] [--epochs 1] [--out docs/compare_pipelines_mid.json]

Each run is its own process: the CLI's defaults (skip-gram, NS-5 with window-shared negatives,
dim 100, window 5, sample 1e-3, min_count 5), one stream (``--parallelism single``: the device
pipeline's mode; the host pipeline then runs its producer thread beside the one stream), the
given epochs, then the bundled analogy (30k most frequent words) and WordSim-353 scores. Seeds
alternate the pipelines, so drift on the machine hits both alike. Reported: per pipeline mean ±
std over seeds, the paired differences device − host with a paired t-test, and words/s (training
time only; compilation excluded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "mid.txt.gz"
PIPELINES = ("host", "device")


def run_one(corpus: str, pipeline: str, seed: int, epochs: int, cache: str, tmp: str) -> dict:
    out = Path(tmp) / f"{pipeline}-{seed}.txt"
    code = f"""
import json, sys
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import train
from sgns_jax.evaluation.embeddings import Embeddings
from sgns_jax.evaluation.benchmarks import evaluate_all
cfg = TrainConfig().replace(data={{"corpus": {corpus!r}, "pipeline": {pipeline!r}, "cache_dir": {cache!r}}},
                            run={{"epochs": {epochs}, "seed": {seed}, "quiet": True, "parallelism": "single"}})
r = train(cfg)
scores = evaluate_all(Embeddings(r.vocab.words, r.vectors))
print("RESULT " + json.dumps({{"words_per_s": r.words_per_second, "seconds": r.seconds,
      "compile_seconds": r.compile_seconds, "analogy": scores["analogy"]["accuracy"],
      "wordsim353": scores["wordsim353"]["spearman"], "loss": r.mean_loss}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{pipeline} seed {seed} failed:\n{r.stderr[-2000:]}")
    return json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])


def paired(diffs: list[float]) -> dict:
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else math.nan
    p = float(stats.ttest_1samp(diffs, 0.0).pvalue) if n > 1 and sd > 0 else math.nan
    return {"mean": mean, "std": sd, "p": p, "n": n}


def summarise(rows: list[dict]) -> dict:
    by = {p: {r["seed"]: r for r in rows if r["pipeline"] == p} for p in PIPELINES}
    seeds = sorted(set(by["host"]) & set(by["device"]))
    out = {}
    for p in PIPELINES:
        runs = list(by[p].values())
        if not runs:
            continue
        out[p] = {k: _mean_std([r[k] for r in runs]) for k in ("analogy", "wordsim353", "words_per_s")}
    if len(seeds) > 1:
        out["device - host"] = {
            "analogy_points": paired([100 * (by["device"][s]["analogy"] - by["host"][s]["analogy"]) for s in seeds]),
            "wordsim353": paired([by["device"][s]["wordsim353"] - by["host"][s]["wordsim353"] for s in seeds]),
            "words_per_s_ratio": paired([by["device"][s]["words_per_s"] / by["host"][s]["words_per_s"] for s in seeds]),
        }
    return out


def _mean_std(x: list[float]) -> list[float]:
    m = sum(x) / len(x)
    return [m, math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else 0.0]


def table(s: dict) -> str:
    lines = ["| pipeline | analogy % | WS-353 ρ | words/s |", "|---|---|---|---|"]
    for p in (p for p in PIPELINES if p in s):
        a, w, v = s[p]["analogy"], s[p]["wordsim353"], s[p]["words_per_s"]
        lines.append(f"| {p} | {100 * a[0]:.2f} ± {100 * a[1]:.2f} | {w[0]:.3f} ± {w[1]:.3f} | "
                     f"{v[0]:,.0f} ± {v[1]:,.0f} |")
    d = s.get("device - host")
    if d:
        a, w, v = d["analogy_points"], d["wordsim353"], d["words_per_s_ratio"]
        lines.append(f"| device − host (paired, n={a['n']}) | {a['mean']:+.2f} ± {a['std']:.2f} "
                     f"(p {a['p']:.2f}) | {w['mean']:+.3f} ± {w['std']:.3f} (p {w['p']:.2f}) | "
                     f"×{v['mean']:.3f} ± {v['std']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", help="JSON of every run and the summary (finished runs are kept)")
    args = ap.parse_args()
    rows = json.loads(Path(args.out).read_text())["runs"] if args.out and Path(args.out).exists() else []
    done = {(r["pipeline"], r["seed"]) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")  # encoded once, by the first run
        for seed in map(int, args.seeds.split(",")):
            order = PIPELINES if seed % 2 == 0 else PIPELINES[::-1]
            for pipeline in order:
                if (pipeline, seed) in done:
                    continue
                row = {"pipeline": pipeline, "seed": seed, "epochs": args.epochs,
                       "corpus": os.path.relpath(Path(args.corpus).resolve(), ROOT),
                       **run_one(args.corpus, pipeline, seed, args.epochs, cache, tmp)}
                rows.append(row)
                print(f"{pipeline:<6} seed {seed}: analogy {100 * row['analogy']:.2f}%, WS-353 "
                      f"{row['wordsim353']:.3f}, {row['words_per_s']:,.0f} words/s", flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps({"runs": rows, "summary": summarise(rows)}, indent=1))
    summary = summarise(rows)
    print(table(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": rows, "summary": summary}, indent=1))
        Path(args.out).with_suffix(".md").write_text(
            f"# Host vs device batches\n\n`python experiments/research/compare_pipelines.py "
            f"--epochs {args.epochs} --out {args.out}` ({len({r['seed'] for r in rows})} seeds)\n\n"
            + table(summary) + "\n")


if __name__ == "__main__":
    main()
