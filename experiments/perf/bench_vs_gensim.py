"""sgns_jax against gensim on the same corpus file and settings, run alternately.

    python experiments/perf/bench_vs_gensim.py [--corpus FILE] [--epochs 1,5] [--out results/bench.json]
                                          [--runs "gensim:ns,sgns_jax:window"]

Settings for both: skip-gram, dim 100, window 5, negative 5, sample 1e-4, min_count 5, learning
rate 0.025 decayed linearly, gensim with workers=2 and sgns_jax with 2 worker streams (plus
one-stream "w1" rows). Each run is its own process, started
alternately (gensim, then each sgns_jax mode) so the ratios hold on a noisy machine. Per run:
end-to-end seconds (process start → vectors on disk: imports, JAX start-up, corpus scan and
compilation included), training words/s (corpus tokens × epochs / training seconds), peak RSS,
analogy accuracy (semantic / syntactic / all, coverage), WordSim-353 ρ, SimLex-999 ρ. Every NS
sampling mode is measured, hierarchical softmax against gensim's ``hs=1, negative=0``, and
CBOW (NS-5) against gensim's ``sg=0``, both at word2vec.c's CBOW learning rate 0.05.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()  # the child's start, before the heavy imports

SETTINGS = dict(dim=100, window=5, negative=5, sample=1e-4, min_count=5, alpha=0.025)


def child(args) -> dict:
    from sgns_jax.evaluation.benchmarks import evaluate_all
    from sgns_jax.evaluation.embeddings import Embeddings

    out = os.path.join(args.tmp, f"{args.side}-{args.mode}-{args.epochs}.txt")
    if args.side == "gensim":
        from gensim.models import Word2Vec
        from gensim.models.word2vec import LineSentence

        hs = args.mode == "hs"
        cbow = args.mode.startswith("cbow")
        # CBOW at word2vec.c's CBOW rate (gensim's default alpha is 0.025 for both models).
        alpha = 0.05 if cbow else SETTINGS["alpha"]
        t = time.perf_counter()
        model = Word2Vec(LineSentence(args.corpus), sg=0 if cbow else 1, vector_size=SETTINGS["dim"],
                         window=SETTINGS["window"], negative=0 if hs else SETTINGS["negative"],
                         hs=int(hs), sample=SETTINGS["sample"], min_count=SETTINGS["min_count"],
                         alpha=alpha, epochs=args.epochs, workers=2, seed=1 + args.seed)
        train_s = time.perf_counter() - t  # gensim's build_vocab + train
        model.wv.save_word2vec_format(out)
        tokens = model.corpus_total_words
    else:
        from sgns_jax.config import TrainConfig
        from sgns_jax.train.loop import train

        loss, optim, run, *model = MODES[args.mode]
        run = run or {"parallelism": "single"}  # "w1": one stream (the CPU default is workers)
        cfg = TrainConfig().replace(
            data={"corpus": args.corpus, "min_count": SETTINGS["min_count"], "window": SETTINGS["window"],
                  "sample": SETTINGS["sample"], "cache_dir": ""},
            model={"dim": SETTINGS["dim"], **(model[0] if model else {})}, loss=loss,
            optim={"learning_rate": SETTINGS["alpha"], **optim},  # None: the model's default
            run={"epochs": args.epochs, "out": out, "quiet": True, "seed": args.seed, **run})
        result = train(cfg)
        train_s = result.seconds
        tokens = result.corpus_tokens
    e2e = time.perf_counter() - T0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scores = evaluate_all(Embeddings.load(out))
    return {"side": args.side, "mode": args.mode, "epochs": args.epochs, "seed": args.seed, "e2e_s": e2e,
            "train_s": train_s, "words_per_s": tokens * args.epochs / train_s, "rss_mb": rss_mb,
            "analogy": scores["analogy"], "wordsim353": scores["wordsim353"]["spearman"],
            "simlex999": scores["simlex999"]["spearman"]}


# sgns_jax modes: (loss, optimizer, run overrides[, model overrides]). Like gensim (workers=2), sgns_jax runs two
# worker streams ("w1": one stream, exact sequential updates). "batch" uses S = 16 shared noise
# words unless "S32" says 32; "lr.03" / "lr.035" rerun a mode at that learning rate. Batch-shared
# negatives at lr 0.035 with two workers collapsed (0.02% analogies): it is left out of RUNS.
PAIR = {"name": "ns", "negative_mode": "pair", "negative": 5}
WINDOW = {"name": "ns", "negative_mode": "window", "negative": 5}
BATCH = {"name": "ns", "negative_mode": "batch", "negative": 5, "shared_samples": 16}
W2 = {"parallelism": "workers", "devices": 2}
MODES = {
    "pair w1": (PAIR, {}, {}),
    "pair": (PAIR, {}, W2),
    "pair lr.035": (PAIR, {"learning_rate": 0.035}, W2),
    "window w1": (WINDOW, {}, {}),
    "window": (WINDOW, {}, W2),
    "window lr.035": (WINDOW, {"learning_rate": 0.035}, W2),
    "batch": (BATCH, {}, W2),
    "batch lr.03": (BATCH, {"learning_rate": 0.03}, W2),
    "batch lr.035": (BATCH, {"learning_rate": 0.035}, W2),
    "batch S32 lr.03": ({**BATCH, "shared_samples": 32}, {"learning_rate": 0.03}, W2),
    "hs w1": ({"name": "hs"}, {}, {}),
    "hs": ({"name": "hs"}, {}, W2),
    "hs R1": ({"name": "hs"}, {}, {**W2, "merge_every": 1}),  # merges every chunk, not every 2
    # The accelerator default batch sizes (config.py), one stream as on one device:
    # quality and stability do not depend on the device, so the CPU measures them.
    "window w1 b512": (WINDOW, {"batch_size": 512}, {}),
    "pair w1 b4096": (PAIR, {"batch_size": 4096}, {}),
    "hs w1 b128": ({"name": "hs"}, {"batch_size": 128}, {}),
    # CBOW (NS-5, per-centre negatives) at its default lr, 0.05 — as gensim's CBOW row.
    "cbow w1": (PAIR, {"learning_rate": None}, {}, {"cbow": True}),
    "cbow": (PAIR, {"learning_rate": None}, W2, {"cbow": True}),
}
RUNS = [("gensim", "ns"), ("sgns_jax", "pair w1"), ("sgns_jax", "pair"), ("sgns_jax", "pair lr.035"),
        ("sgns_jax", "window w1"), ("sgns_jax", "window"), ("sgns_jax", "window lr.035"),
        ("sgns_jax", "batch"), ("sgns_jax", "batch lr.03"), ("sgns_jax", "batch S32 lr.03"),
        ("gensim", "hs"), ("sgns_jax", "hs w1"), ("sgns_jax", "hs"),
        ("gensim", "cbow"), ("sgns_jax", "cbow w1"), ("sgns_jax", "cbow")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus")
    p.add_argument("--epochs", default="1,5")
    p.add_argument("--runs", help="comma-separated side:mode list (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds of both sides (gensim's "
                   "is seed + 1); with several, a summary over seeds follows the rows")
    p.add_argument("--out", help="write all measurements here as JSON (runs already there are kept)")
    p.add_argument("--summary", help="only summarise this JSON file of an earlier run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.epochs = int(args.epochs)
        print("RESULT " + json.dumps(child(args)))
        return
    if args.summary:
        print(summary_table(json.loads(open(args.summary).read())))
        return
    if not args.corpus:
        from sgns_jax.evaluation.benchmarks import bundled
        args.corpus = str(bundled("wiki.txt.gz"))
    rows = json.loads(open(args.out).read()) if args.out and os.path.exists(args.out) else []
    done = {(r["side"], r["mode"], r["epochs"], r["seed"]) for r in rows}
    runs = [tuple(r.split(":")) for r in args.runs.split(",")] if args.runs else RUNS
    with tempfile.TemporaryDirectory() as tmp:
        for seed in map(int, args.seeds.split(",")):
            for epochs in map(int, args.epochs.split(",")):
                for side, mode in runs:
                    if (side, mode, epochs, seed) in done:
                        continue
                    cmd = [sys.executable, __file__, "--child", "--side", side, "--mode", mode,
                           "--epochs", str(epochs), "--corpus", args.corpus, "--tmp", tmp,
                           "--seed", str(seed)]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        sys.exit(f"{side} {mode} failed:\n{r.stderr[-2000:]}")
                    rows.append(json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:]))
                    print_row(rows[-1], [x for x in rows if x["seed"] == seed])
                    if args.out:
                        with open(args.out, "w") as f:
                            json.dump(rows, f, indent=1)
    if len(args.seeds.split(",")) > 1:
        print(summary_table(rows))


def _reference(r: dict) -> str:
    return "hs" if r["mode"].startswith("hs") else "cbow" if r["mode"].startswith("cbow") else "ns"


def summary_table(rows: list[dict]) -> str:
    """Per sgns_jax mode and epoch count, over the seeds: words/s relative to gensim's run of
    the same seed (mean, min–max) and the paired differences in analogy points and WS-353 ρ
    (mean ± std, min … max), each with the p-value of a paired t-test (log ratio against 0 for
    the speed): the evidence that a difference from gensim is real."""
    import statistics

    gensim = {(r["mode"], r["epochs"], r["seed"]): r for r in rows if r["side"] == "gensim"}
    groups: dict[tuple[str, int], list[tuple[dict, dict]]] = {}
    for r in rows:
        ref = gensim.get((_reference(r), r["epochs"], r["seed"]))
        if r["side"] == "sgns_jax" and ref is not None:
            groups.setdefault((r["mode"], r["epochs"]), []).append((r, ref))

    def ms(x: list[float], fmt: str) -> str:
        sd = statistics.stdev(x) if len(x) > 1 else 0.0
        return f"{format(statistics.mean(x), fmt)} ± {format(sd, fmt[1:] if fmt[0] == '+' else fmt)} " \
               f"({format(min(x), fmt)} … {format(max(x), fmt)})"

    from scipy import stats

    def p_value(x: list[float]) -> str:  # two-sided one-sample t-test against 0 (paired by seed)
        return f"{stats.ttest_1samp(x, 0.0).pvalue:.3f}" if len(x) > 1 and statistics.stdev(x) > 0 else "–"

    lines = ["| run | epochs | seeds | words/s vs gensim (p) | end to end vs gensim | Δ analogy, points (p) "
             "| Δ WS-353 ρ (p) | gensim analogy % |", "|---|---|---|---|---|---|---|---|"]
    for (mode, epochs), pairs in groups.items():
        ratio = [r["words_per_s"] / g["words_per_s"] for r, g in pairs]
        e2e = [g["e2e_s"] / r["e2e_s"] for r, g in pairs]
        d_an = [100 * (r["analogy"]["accuracy"] - g["analogy"]["accuracy"]) for r, g in pairs]
        d_ws = [r["wordsim353"] - g["wordsim353"] for r, g in pairs]
        g_an = [100 * g["analogy"]["accuracy"] for _, g in pairs]
        log_ratio = [math.log(x) for x in ratio]
        lines.append(f"| `{mode}` | {epochs} | {len(pairs)} | {statistics.mean(ratio):.2f}× "
                     f"({min(ratio):.2f}–{max(ratio):.2f}; p {p_value(log_ratio)}) | "
                     f"{statistics.mean(e2e):.2f}× ({min(e2e):.2f}–{max(e2e):.2f}) | "
                     f"{ms(d_an, '+.2f')}; p {p_value(d_an)} | {ms(d_ws, '+.3f')}; p {p_value(d_ws)} | "
                     f"{ms(g_an, '.2f')} |")
    return "\n".join(lines)


def print_row(r: dict, rows: list[dict]) -> None:
    if len(rows) == 1:
        print(f"{'run':<22} {'ep':>2} {'e2e s':>6} {'train w/s':>10} {'RSS MB':>7} {'analogy':>15} "
              f"{'sem/syn':>11} {'WS353':>6} {'SimLex':>6} | ratios vs gensim: {'w/s':>5} {'e2e':>5} {'RSS':>5}")
    a = r["analogy"]
    ref_mode = "hs" if r["mode"].startswith("hs") else "cbow" if r["mode"].startswith("cbow") else "ns"
    ref = next((x for x in rows if x["side"] == "gensim" and x["mode"] == ref_mode
                and x["epochs"] == r["epochs"]), None)
    ratios = ""
    if ref is not None and r["side"] != "gensim":
        ratios = (f" | {r['words_per_s'] / ref['words_per_s']:>21.2f}× {ref['e2e_s'] / r['e2e_s']:>4.2f}× "
                  f"{r['rss_mb'] / ref['rss_mb']:>4.2f}×  Δanalogy {100 * (a['accuracy'] - ref['analogy']['accuracy']):+.2f} "
                  f"ΔWS {r['wordsim353'] - ref['wordsim353']:+.3f}")
    print(f"{r['side'] + ' ' + r['mode']:<22} {r['epochs']:>2} {r['e2e_s']:>6.1f} {r['words_per_s']:>10,.0f} "
          f"{r['rss_mb']:>7.0f} {100 * a['accuracy']:>6.2f}% ({a['answered']}) "
          f"{100 * a['semantic']:>5.1f}/{100 * a['syntactic']:<5.1f} {r['wordsim353']:>6.3f} "
          f"{r['simlex999']:>6.3f}{ratios}", flush=True)


if __name__ == "__main__":
    main()
