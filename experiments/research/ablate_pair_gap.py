"""Why per-pair NS with one stream scored below gensim: an ablation over the candidate causes.

    python experiments/research/ablate_pair_gap.py [--seeds 0,1,2,3] [--corpus FILE] [--out docs/ablation_pair_gap.json]
                                          [--variants "gensim,pair b1024,..."]

Every run is one process, with the settings of ``bench_vs_gensim.py`` (skip-gram, dim 100,
window 5, NS-5, sample 1e-4, min_count 5, lr 0.025 linearly decayed, 5 epochs, bundled corpus),
``--negative-mode pair`` and one stream (word2vec's own sampling, exact sequential updates
within a step). Candidates (issue 14, item 4), each switched back to the old behaviour alone:

* ``orientation``: input = centre, output = context (the project's pairs before this change;
  word2vec.c and gensim train input = context, output = centre);
* ``cut``: sentences cut at 1,000 in-vocabulary tokens *before* subsampling (before this change;
  word2vec cuts at 1,000 kept words);
* batch size: 1,024 pairs a step (the default), 256, 64 — a step sums its pairs' updates on
  parameters that are stale within the step; word2vec applies them one by one;
* gensim's differences from word2vec.c, each alone: ``gensim init`` — gensim 4 draws w_in
  uniform in [−1/D, 1/D) (``KeyedVectors.prep_vectors``), twice word2vec.c's ±0.5/D, which
  every other variant uses (``model.init_scale = 0.5``, the project's default before this
  ablation); ``sentences 10k`` — gensim's ``MAX_SENTENCE_LEN`` is 10,000 words (word2vec.c:
  1,000);
* the lr schedule's unit is not a variable here: it is word2vec's (words read), pinned by
  ``tests/test_train.py::test_learning_rate_decays_linearly_in_words_read``.

Reported per variant: the paired difference to gensim's run with the same seed (analogy points,
WordSim-353 ρ) as mean ± std over the seeds, a paired t-test against gensim, and words/s.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PAIR = {"name": "ns", "negative_mode": "pair", "negative": 5}

# variant → (optim overrides, model overrides, old behaviours switched back on). The runs
# before the fix used word2vec.c's initial range (init_scale 0.5); so do these, but the last.
W2V_INIT = {"init_scale": 0.5}
VARIANTS = {
    "pair b1024": ({}, W2V_INIT, []),
    "pair b1024 old orientation": ({}, W2V_INIT, ["orientation"]),
    "pair b1024 old cut": ({}, W2V_INIT, ["cut"]),
    "pair b1024 old orientation+cut": ({}, W2V_INIT, ["orientation", "cut"]),
    "pair b256": ({"batch_size": 256}, W2V_INIT, []),
    "pair b64": ({"batch_size": 64}, W2V_INIT, []),
    "pair b1024 sentences 10k": ({}, W2V_INIT, ["sentences 10k"]),
    "pair b1024 gensim init": ({}, {"init_scale": 1.0}, []),
}


def apply_old_behaviour(names: list[str]) -> None:
    """Monkeypatch the batcher back to a previous behaviour (for this ablation only)."""
    import numpy as np

    from sgns_jax.data import batches
    from sgns_jax.data.corpus import Corpus

    if "cut" in names:
        # Sentences = the corpus's stored pieces (lines cut at 1,000 in-vocabulary tokens before
        # subsampling), never cut again after subsampling.
        Corpus.line_ids = lambda self, pos: np.searchsorted(self.sentence_starts, pos, side="right") - 1
        original_spec = batches.BatchSpec.__init__

        def spec_init(self, *a, **kw):
            original_spec(self, *a, **kw)
            object.__setattr__(self, "sentence_words", 1 << 62)

        batches.BatchSpec.__init__ = spec_init
    if "sentences 10k" in names:
        original_init = batches.BatchSpec.__init__

        def spec_10k(self, *a, **kw):
            original_init(self, *a, **kw)
            object.__setattr__(self, "sentence_words", 10_000)

        batches.BatchSpec.__init__ = spec_10k
    if "orientation" in names:
        layout = batches._layout_examples

        def swapped(block, sent, spec):
            ex = layout(block, sent, spec)
            if spec.layout == "pairs":
                ex["input"], ex["output"] = ex["output"], ex["input"]
            return ex

        batches._layout_examples = swapped


def child(variant: str, seed: int, corpus: str, tmp: str) -> dict:
    sys.path.insert(0, str(HERE.parent / "perf"))
    import bench_vs_gensim as bench

    ns = argparse.Namespace(side="gensim" if variant == "gensim" else "sgns_jax", mode=variant,
                            epochs=5, seed=seed, corpus=corpus, tmp=tmp)
    if variant == "gensim":
        ns.mode = "ns"
    else:
        optim, model, old = VARIANTS[variant]
        apply_old_behaviour(old)
        bench.MODES[variant] = (PAIR, optim, {}, model)
    return bench.child(ns)


def paired_t(diffs: list[float]) -> tuple[float, float]:
    """(t, two-sided p) of a paired t-test that the mean difference is 0."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    if not sd:
        return float("inf"), 0.0
    t = mean / (sd / math.sqrt(n))
    return t, float(2 * stats.t.sf(abs(t), n - 1))


def summarise(rows: list[dict]) -> list[dict]:
    by = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    gensim = by.get("gensim", {})
    out = []
    for variant, runs in by.items():
        seeds = sorted(s for s in runs if s in gensim)
        d_an = [100 * (runs[s]["analogy"]["accuracy"] - gensim[s]["analogy"]["accuracy"]) for s in seeds]
        d_ws = [runs[s]["wordsim353"] - gensim[s]["wordsim353"] for s in seeds]
        an = [100 * runs[s]["analogy"]["accuracy"] for s in sorted(runs)]
        wps = [runs[s]["words_per_s"] for s in sorted(runs)]
        row = {"variant": variant, "seeds": sorted(runs), "analogy_mean": _mean(an), "analogy_std": _std(an),
               "words_per_s": _mean(wps)}
        if variant != "gensim" and len(seeds) > 1:
            t, p = paired_t(d_an)
            row.update(d_analogy_mean=_mean(d_an), d_analogy_std=_std(d_an), t=t, p=p,
                       d_ws_mean=_mean(d_ws), d_ws_std=_std(d_ws))
        out.append(row)
    return out


def _mean(x):
    return sum(x) / len(x) if x else float("nan")


def _std(x):
    m = _mean(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else 0.0


def table(summary: list[dict]) -> str:
    # Quality only: words/s are in the JSON, but an ablation is not a speed benchmark.
    lines = ["| run | analogy % (mean ± std) | Δ analogy vs gensim (paired) | paired t-test p | "
             "Δ WS-353 ρ |", "|---|---|---|---|---|"]
    order = ["gensim", *VARIANTS]
    for r in sorted(summary, key=lambda r: order.index(r["variant"]) if r["variant"] in order else 99):
        if r["variant"] == "gensim":
            lines.append(f"| gensim 4.4 (workers=2) | {r['analogy_mean']:.2f} ± {r['analogy_std']:.2f} | — | — | — |")
            continue
        lines.append(f"| `{r['variant']}` | {r['analogy_mean']:.2f} ± {r['analogy_std']:.2f} | "
                     f"{r.get('d_analogy_mean', float('nan')):+.2f} ± {r.get('d_analogy_std', float('nan')):.2f} | "
                     f"{r.get('p', float('nan')):.3f} | {r.get('d_ws_mean', float('nan')):+.3f} ± "
                     f"{r.get('d_ws_std', float('nan')):.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--corpus")
    p.add_argument("--variants", help="comma-separated (default: gensim and every variant)")
    p.add_argument("--out", help="JSON with every run and the summary (runs already there are kept)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.corpus:
        from sgns_jax.evaluation.benchmarks import bundled
        args.corpus = str(bundled("wiki.txt.gz"))
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], int(args.child[1]), args.corpus, args.tmp)))
        return
    import tempfile

    variants = args.variants.split(",") if args.variants else ["gensim", *VARIANTS]
    rows = []
    if args.out and Path(args.out).exists():
        rows = json.loads(Path(args.out).read_text())["runs"]
    done = {(r["variant"], r["seed"]) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in map(int, args.seeds.split(",")):
            for variant in variants:  # alternate variants within a seed: drift hits all alike
                if (variant, seed) in done:
                    continue
                r = subprocess.run([sys.executable, __file__, "--child", variant, str(seed),
                                    "--corpus", args.corpus, "--tmp", tmp], capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"{variant} seed {seed} failed:\n{r.stderr[-2000:]}")
                row = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
                row.update(variant=variant, seed=seed)
                rows.append(row)
                print(f"{variant:<34} seed {seed}: analogy {100 * row['analogy']['accuracy']:.2f}%, "
                      f"WS-353 {row['wordsim353']:.3f}, {row['words_per_s']:,.0f} words/s", flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps({"runs": rows, "summary": summarise(rows)}, indent=1))
    summary = summarise(rows)
    print(table(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
