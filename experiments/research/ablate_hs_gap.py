"""Why hierarchical softmax scored below gensim's: word2vec's HS, one pair at a time, against the
same algorithm with batched steps whose windows are consecutive or strided through a chunk.

    python experiments/research/ablate_hs_gap.py [--seeds 0,1,2,3] [--corpus FILE] [--epochs 5]
                                        [--variants "word2vec order,64 consecutive,..."]
                                        [--out docs/ablation_hs_gap.json]

sgns_jax's HS was 1.8 ± 0.5 analogy points below gensim's on the bundled corpus (4 seeds) and
4.2 on mid.txt.gz (2 seeds), WordSim level. Its per-pair maths is word2vec's (tested against a
transcription of word2vec.c's loop), so the candidates are the order of the updates and the
data pipeline. To separate them, every variant here runs ``experiments/research/reference/word2vec_hs.c``
— word2vec.c's skip-gram HS loop, transcribed, compiled with gcc — on sgns_jax's vocabulary,
Huffman tree and subsampling probabilities (the bench_vs_gensim settings: dim 100, window 5,
sample 1e-4, min_count 5, lr 0.025 linearly decayed, 5 epochs), changing only the update order:

* ``word2vec order``: one pair at a time, as word2vec.c and gensim;
* ``B consecutive``: steps of B consecutive windows whose updates are computed on the parameters
  before the step and summed, as sgns_jax's steps were (B = 64 was the HS default);
* ``B strided``: the same steps, step t of a chunk of 8,192 windows taking windows t, t + T, …
  (T = 8,192 / B), as sgns_jax's steps now are (``sgns_jax.data.batches.strided_steps``).

The same seed gives every variant the same subsampling, windows and initial vectors, so each
variant is compared with the word2vec order of its seed: paired differences, mean ± std over the
seeds and a paired t-test. Needs gcc.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SOURCE = HERE / "reference" / "word2vec_hs.c"
SETTINGS = dict(dim=100, window=5, sample=1e-4, min_count=5)
# variant -> (windows a step (0: one pair at a time), layout)
VARIANTS = {
    "word2vec order": (0, "consecutive"),
    "8 consecutive": (8, "consecutive"),
    "64 consecutive": (64, "consecutive"),
    "64 strided": (64, "strided"),
    "256 consecutive": (256, "consecutive"),
    "256 strided": (256, "strided"),
}


def dump_inputs(corpus_path: str, out: Path) -> list[str]:
    """sgns_jax's encoded corpus, keep-probabilities and Huffman tree as the C program reads
    them; returns the vocabulary."""
    from sgns_jax.data.corpus import encode_corpus
    from sgns_jax.data.pairs import keep_probabilities
    from sgns_jax.losses.huffman import huffman_codes

    corpus = encode_corpus(corpus_path, min_count=SETTINGS["min_count"], cache_dir=None)
    counts = np.asarray(corpus.vocab.counts)
    tree = huffman_codes(counts)
    np.asarray(corpus.ids, dtype=np.int32).tofile(out / "ids.bin")
    keep_probabilities(counts, SETTINGS["sample"]).astype(np.float64).tofile(out / "keep.bin")
    tree.points.astype(np.int32).tofile(out / "points.bin")
    tree.codes.astype(np.int8).tofile(out / "codes.bin")
    tree.lengths.astype(np.int32).tofile(out / "lengths.bin")
    (out / "meta.txt").write_text(f"{len(corpus.ids)} {counts.size} {tree.points.shape[1]} "
                                  f"{SETTINGS['dim']} {SETTINGS['window']}\n")
    return list(corpus.vocab.words)


def run_variant(binary: Path, inputs: Path, words: list[str], variant: str, seed: int,
                epochs: int) -> dict:
    from sgns_jax.evaluation.benchmarks import evaluate_all
    from sgns_jax.evaluation.embeddings import Embeddings

    batch, layout = VARIANTS[variant]
    out = inputs / f"vectors-{seed}.bin"
    t = time.perf_counter()
    subprocess.run([str(binary), str(inputs), str(epochs), str(seed), str(batch), layout, str(out)],
                   check=True)
    seconds = time.perf_counter() - t
    vectors = np.fromfile(out, dtype=np.float32).reshape(len(words), SETTINGS["dim"])
    scores = evaluate_all(Embeddings(words, vectors))
    return {"variant": variant, "seed": seed, "epochs": epochs, "seconds": seconds,
            "analogy": 100 * scores["analogy"]["accuracy"],
            "wordsim353": scores["wordsim353"]["spearman"], "simlex999": scores["simlex999"]["spearman"]}


def summarise(rows: list[dict]) -> list[dict]:
    from scipy import stats

    base = {r["seed"]: r for r in rows if r["variant"] == "word2vec order"}
    out = []
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        s = {"variant": variant, "seeds": len(mine),
             "analogy_mean": statistics.mean(r["analogy"] for r in mine),
             "analogy_std": statistics.stdev([r["analogy"] for r in mine]) if len(mine) > 1 else 0.0,
             "wordsim353_mean": statistics.mean(r["wordsim353"] for r in mine)}
        paired = [(r, base[r["seed"]]) for r in mine if r["seed"] in base and variant != "word2vec order"]
        if paired:
            d = [r["analogy"] - b["analogy"] for r, b in paired]
            dws = [r["wordsim353"] - b["wordsim353"] for r, b in paired]
            s |= {"d_analogy_mean": statistics.mean(d),
                  "d_analogy_std": statistics.stdev(d) if len(d) > 1 else 0.0,
                  "d_analogy_p": float(stats.ttest_rel([r["analogy"] for r, _ in paired],
                                                       [b["analogy"] for _, b in paired]).pvalue)
                  if len(d) > 1 else math.nan,
                  "d_wordsim353_mean": statistics.mean(dws)}
        out.append(s)
    return out


def table(summary: list[dict]) -> str:
    lines = ["| update order | analogy % (mean ± std) | Δ analogy vs word2vec order (paired) | p | "
             "WS-353 ρ | Δ WS-353 ρ |", "|---|---|---|---|---|---|"]
    for s in summary:
        if "d_analogy_mean" in s:
            delta = f"{s['d_analogy_mean']:+.2f} ± {s['d_analogy_std']:.2f}"
            p, dws = f"{s['d_analogy_p']:.3f}", f"{s['d_wordsim353_mean']:+.3f}"
        else:
            delta, p, dws = "—", "—", "—"
        lines.append(f"| {s['variant']} | {s['analogy_mean']:.2f} ± {s['analogy_std']:.2f} | {delta} | {p} | "
                     f"{s['wordsim353_mean']:.3f} | {dws} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--corpus")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--variants", help="comma-separated (default: all)")
    p.add_argument("--out", help="JSON file (resumed: runs already in it are kept)")
    args = p.parse_args()
    if shutil.which("gcc") is None:
        sys.exit("ablate_hs_gap.py needs gcc to build experiments/research/reference/word2vec_hs.c")
    if args.corpus is None:
        from sgns_jax.evaluation.benchmarks import bundled
        args.corpus = str(bundled("wiki.txt.gz"))
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    rows = json.loads(Path(args.out).read_text())["runs"] if args.out and Path(args.out).exists() else []
    done = {(r["variant"], r["seed"]) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        binary = tmp / "word2vec_hs"
        subprocess.run(["gcc", "-O3", "-march=native", "-o", str(binary), str(SOURCE), "-lm"], check=True)
        words = dump_inputs(args.corpus, tmp)
        for seed in map(int, args.seeds.split(",")):
            for variant in variants:
                if (variant, seed) in done:
                    continue
                r = run_variant(binary, tmp, words, variant, seed, args.epochs)
                print(f"{variant:<18} seed {seed}: analogy {r['analogy']:.2f}%  WS-353 {r['wordsim353']:.3f}  "
                      f"({r['seconds']:.0f} s)", flush=True)
                rows.append(r)
                if args.out:
                    Path(args.out).write_text(json.dumps({"corpus": args.corpus, "runs": rows,
                                                          "summary": summarise(rows)}, indent=1))
    print(table(summarise(rows)))


if __name__ == "__main__":
    main()
