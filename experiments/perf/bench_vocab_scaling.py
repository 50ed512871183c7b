"""How cost grows with the vocabulary: words/s, peak RSS and merge time from 10k to 1M words.

    python experiments/perf/bench_vocab_scaling.py [--tokens 2000000] [--vocabs 10000,100000,1000000]
                                              [--dims 100,300] [--runs ...] [--out docs/bench_vocab_scaling.json]

The defaults took about 16 minutes on the 2-core development machine; ``--runs`` with
``full w1`` adds the exact softmax (about 4 minutes a cell at its 240 s budget).

The corpus is synthetic, generated and seeded here (``--seed``): every word of the vocabulary
once, the rest of the tokens drawn from a Zipf law p(rank r) ∝ 1/r over the same words, shuffled,
written as lines of 1,000 tokens — so ``min_count 1`` gives exactly V words, and the frequent
words are as frequent as in text. One epoch, skip-gram, window 5, negative 5, sample 1e-3.
Runs (each its own process, alternating with gensim 4.4 on the same file):

* ``window w1`` / ``window w2``: the default NS mode with one stream / two worker streams;
* ``pair w1``: word2vec's per-pair negatives; ``hs w1``: hierarchical softmax;
* ``full w1``: the exact softmax, only where V ≤ 10,000 (it is O(V) per pair; not run unless
  ``--runs`` names it);
* ``gensim ns`` / ``gensim hs``: gensim with ``workers=2``.

Reported per run: training words/s (compilation excluded), end-to-end seconds, peak RSS, and
for worker streams the merge seconds per round. The per-word cost of NS should stay flat in V
(HS grows like log V) and memory should be about the tables times the copies a run keeps.
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

T0 = time.perf_counter()
SETTINGS = dict(window=5, negative=5, sample=1e-3)
RUNS = ["gensim ns", "window w1", "window w2", "pair w1", "gensim hs", "hs w1", "full w1"]
DEFAULT_RUNS = [r for r in RUNS if r != "full w1"]


def make_corpus(path: Path, tokens: int, vocab: int, seed: int) -> None:
    """Every word once plus Zipf-distributed tokens, shuffled; lines of 1,000 tokens."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    ids = np.concatenate([np.arange(vocab), rng.choice(vocab, size=max(tokens - vocab, 0), p=p / p.sum())])
    rng.shuffle(ids)
    names = np.array([f"w{i}" for i in range(vocab)])
    with open(path, "w") as f:
        for start in range(0, ids.size, 1000):
            f.write(" ".join(names[ids[start:start + 1000]]) + "\n")


def child(run: str, corpus: str, dim: int, tmp: str) -> dict:
    side, mode = run.split(" ")
    mode = mode if side == "gensim" else side
    out = os.path.join(tmp, "vectors.txt")
    if side == "gensim":
        from gensim.models import Word2Vec
        from gensim.models.word2vec import LineSentence

        hs = mode == "hs"
        t = time.perf_counter()
        model = Word2Vec(LineSentence(corpus), sg=1, vector_size=dim, window=SETTINGS["window"],
                         negative=0 if hs else SETTINGS["negative"], hs=int(hs),
                         sample=SETTINGS["sample"], min_count=1, epochs=1, workers=2)
        train_s = time.perf_counter() - t
        tokens, vocab = model.corpus_total_words, len(model.wv)
        t = time.perf_counter()
        model.wv.save_word2vec_format(out, binary=True)
        write_s = time.perf_counter() - t
    else:
        from sgns_jax.config import TrainConfig
        from sgns_jax.train.loop import train

        streams = 2 if run.endswith("w2") else 1
        loss = {"window": {"name": "ns", "negative_mode": "window"},
                "pair": {"name": "ns", "negative_mode": "pair"},
                "hs": {"name": "hs"}, "full": {"name": "full"}}[mode]
        cfg = TrainConfig().replace(
            data={"corpus": corpus, "min_count": 1, "cache_dir": "", "window": SETTINGS["window"],
                  "sample": SETTINGS["sample"]},
            model={"dim": dim},
            loss={**loss, **({"negative": SETTINGS["negative"]} if loss["name"] == "ns" else {})},
            run={"epochs": 1, "quiet": True, "parallelism": "workers" if streams > 1 else "single",
                 "devices": streams, "out": out, "binary": True,
                 "max_seconds": 240})
        result = train(cfg)
        train_s, vocab = result.seconds, len(result.vocab)
        tokens = result.corpus_tokens * result.words / max(result.epoch_words, 1)
        merge, write_s = result.merge_seconds_per_round, None
    if side == "gensim":
        merge = None
    return {"run": run, "dim": dim, "vocab": vocab, "train_s": train_s, "words_per_s": tokens / train_s,
            "e2e_s": time.perf_counter() - T0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "merge_s_per_round": merge, "write_s": write_s}


def table(rows: list[dict]) -> str:
    lines = ["| V | D | run | words/s | × V=10k | e2e s | peak RSS MB | RSS vs gensim | merge s/round |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next((x for x in rows if x["run"] == r["run"] and x["dim"] == r["dim"]
                     and x["target_vocab"] == min(y["target_vocab"] for y in rows)), r)
        ref = next((x for x in rows if x["run"] == ("gensim hs" if r["run"].startswith("hs") else "gensim ns")
                    and x["dim"] == r["dim"] and x["target_vocab"] == r["target_vocab"]), None)
        merge = f"{r['merge_s_per_round']:.3f}" if r.get("merge_s_per_round") is not None else ""
        ratio = f"{r['rss_mb'] / ref['rss_mb']:.2f}×" if ref and not r["run"].startswith("gensim") else ""
        lines.append(f"| {r['vocab']:,} | {r['dim']} | {r['run']} | {r['words_per_s']:,.0f} | "
                     f"{r['words_per_s'] / base['words_per_s']:.2f} | {r['e2e_s']:.0f} | {r['rss_mb']:,.0f} | "
                     f"{ratio} | {merge} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2_000_000)
    p.add_argument("--vocabs", default="10000,100000,1000000")
    p.add_argument("--dims", default="100,300")
    p.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"from: {', '.join(RUNS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the rows here as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.corpus, args.dim, args.tmp)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for vocab in map(int, args.vocabs.split(",")):
            corpus = Path(tmp) / f"zipf-{vocab}.txt"
            make_corpus(corpus, args.tokens, vocab, args.seed)
            for dim in map(int, args.dims.split(",")):
                for run in args.runs.split(","):
                    if run.startswith("full") and vocab > 10_000:
                        continue
                    cmd = [sys.executable, __file__, "--child", run, "--corpus", str(corpus),
                           "--dim", str(dim), "--tmp", tmp]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        sys.exit(f"{run} V={vocab} D={dim} failed:\n{r.stderr[-3000:]}")
                    row = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
                    row["target_vocab"] = vocab
                    rows.append(row)
                    print(f"V={row['vocab']:>9,} D={dim} {run:<10} {row['words_per_s']:>10,.0f} words/s  "
                          f"e2e {row['e2e_s']:6.1f} s  RSS {row['rss_mb']:7,.0f} MB" +
                          (f"  merge {row['merge_s_per_round']:.3f} s/round" if row.get("merge_s_per_round") else ""),
                          flush=True)
                    if args.out:
                        Path(args.out).write_text(json.dumps({"tokens": args.tokens, "settings": SETTINGS, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
