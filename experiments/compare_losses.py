"""Compare full softmax, hierarchical softmax, negative sampling, NCE and sampled softmax.

    python experiments/compare_losses.py --config experiments/configs/compare_losses.py --out DIR
    python experiments/compare_losses.py --quick --out DIR

Writes into DIR: ``results.jsonl`` (every measurement; finished cells are skipped on a rerun),
``report.md`` (the table, the ranking and the comparison with the literature) and two plots,
``heldout_vs_time.png`` and ``analogy_vs_time.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import runpy
import sys
import time
from pathlib import Path

import jax
import numpy as np

from sgns_jax.data.corpus import default_cache_dir, encode_corpus
from sgns_jax.evaluation.benchmarks import (SIMLEX, WORDSIM, bundled, evaluate_analogies,
                                            evaluate_word_pairs)
from sgns_jax.evaluation.embeddings import Embeddings
from sgns_jax.evaluation.heldout import HeldoutObjective, heldout_pairs
from sgns_jax.train.config import TrainConfig
from sgns_jax.train.loop import train

HERE = Path(__file__).parent


def load_config(path: str | None, quick: bool) -> dict:
    path = path or str(HERE / "configs" / "compare_losses.py")
    return runpy.run_path(path)["get_config"](quick=quick)


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def run_cell(cfg: dict, vocab_name: str, strategy: str, seed: int, data: dict, out: Path) -> None:
    cell = f"{vocab_name}/{strategy}/seed{seed}"
    train_corpus, pairs = data["train"], data["pairs"]
    loss = cfg["strategies"][strategy]
    tc = TrainConfig().replace(
        data={"corpus": "<in memory>", "window": cfg["window"], "sample": cfg["sample"]},
        model={"dim": cfg["dim"]},
        loss={k: v for k, v in loss.items()},
        optim={"learning_rate": cfg["learning_rate"], "batch_size": cfg["batch_size"],
               "steps_per_chunk": cfg["steps_per_chunk"]},
        run={"epochs": cfg["epochs"], "seed": seed, "quiet": True,
             "max_seconds": cfg["budget_seconds"]})
    heldout = HeldoutObjective(loss["name"], pairs, train_corpus.vocab.counts)
    planned_words = len(train_corpus) * cfg["epochs"]
    next_eval = [1.0 / cfg["eval_points"]]

    def evaluate(params) -> dict:
        host = {k: np.asarray(v) for k, v in params.items()}
        emb = Embeddings(train_corpus.vocab.words, host["w_in"])
        a = evaluate_analogies(emb, restrict_vocab=30000)
        return {"heldout": heldout(host),
                "analogy": a.accuracy, "answered": a.answered, "total": a.total}

    def callback(event) -> None:
        # Evaluate at every 1/eval_points of the run: of its words, or of its time budget for
        # runs the budget cuts short (full softmax), whichever comes first.
        progress = max(event.words / planned_words, event.seconds / cfg["budget_seconds"])
        if progress >= next_eval[0] and progress < 1.0:
            while next_eval[0] <= progress:
                next_eval[0] += 1.0 / cfg["eval_points"]
            append(out, {"cell": cell, "kind": "point", "seconds": event.seconds,
                         "words": event.words, "train_loss": event.loss, **evaluate(event.params)})

    t0 = time.perf_counter()
    result = train(tc, train_corpus, callback)
    final = evaluate(result.params)
    emb = Embeddings(train_corpus.vocab.words, result.params["w_in"])
    ws = evaluate_word_pairs(emb, bundled(WORDSIM), restrict_vocab=None)
    sl = evaluate_word_pairs(emb, bundled(SIMLEX), restrict_vocab=None)
    append(out, {"cell": cell, "kind": "point", "seconds": result.seconds, "words": result.words,
                 "train_loss": result.mean_loss, **final})
    append(out, {"cell": cell, "kind": "final", "vocab": vocab_name, "strategy": strategy,
                 "seed": seed, "vocab_size": len(train_corpus.vocab), "seconds": result.seconds,
                 "wall_seconds": time.perf_counter() - t0, "words": result.words,
                 "epoch_fraction": result.words / (len(train_corpus) * cfg["epochs"]),
                 "words_per_s": result.words_per_second, "pairs_per_s": result.examples / result.seconds,
                 "train_loss": result.mean_loss, **final, "wordsim353": ws.spearman,
                 "wordsim_pairs": ws.pairs, "simlex999": sl.spearman, "simlex_pairs": sl.pairs})
    print(f"{cell}: heldout {final['heldout']:.3f}, analogy {100 * final['analogy']:.2f}%, "
          f"ws353 {ws.spearman:.3f}, simlex {sl.spearman:.3f}, {result.words_per_second:,.0f} words/s, "
          f"{result.words / (len(train_corpus) * cfg['epochs']):.0%} of the epochs in {result.seconds:.0f} s",
          flush=True)


def prepare(cfg: dict, settings: dict) -> dict:
    corpus = encode_corpus(cfg["corpus"] or bundled("wiki.txt.gz"), cache_dir=default_cache_dir(),
                           **settings)
    if cfg["max_tokens"]:
        corpus = corpus.head(cfg["max_tokens"])
    train_corpus, held = corpus.split_heldout(cfg["heldout_fraction"])
    return {"train": train_corpus, "pairs": heldout_pairs(held, cfg["window"], cfg["heldout_pairs"])}


# --- report ------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.array(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _fmt(values, scale=1.0, digits=3) -> str:
    m, s = _mean_std([v * scale for v in values])
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if len(values) > 1 else "")


def summarise(records: list[dict]) -> dict:
    finals: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r["kind"] == "final":
            finals.setdefault((r["vocab"], r["strategy"]), []).append(r)
    return finals


def ranking(finals, vocab: str, key: str, reverse: bool) -> list[tuple[str, float]]:
    rows = [(s, _mean_std([r[key] for r in rs])[0]) for (v, s), rs in finals.items() if v == vocab]
    rows = [(s, x) for s, x in rows if math.isfinite(x)]
    return sorted(rows, key=lambda t: t[1], reverse=reverse)


def write_report(cfg: dict, records: list[dict], out_dir: Path, command: str) -> None:
    finals = summarise(records)
    vocabs = list(dict.fromkeys(v for v, _ in finals))
    lines = ["# Comparing the softmax strategies", "",
             f"Command: `{command}`", "",
             f"Corpus: bundled Wikipedia text; {int(100 * cfg['heldout_fraction'])}% of the sentences "
             f"held out; skip-gram, dim {cfg['dim']}, window {cfg['window']}, sample {cfg['sample']}, "
             f"SGD lr {cfg['learning_rate']}, batches of {cfg['batch_size']} pairs, at most "
             f"{cfg['epochs']} epoch(s) or {cfg['budget_seconds']:.0f} s of training per run; "
             f"seeds {cfg['seeds']} (mean ± std where more than one).", "",
             "Held-out objective: mean −log p(c | w) under each model's own normalised "
             "distribution (softmax over its output vectors; the tree for HS) on "
             f"{cfg['heldout_pairs']:,} held-out pairs — lower is better; ln V is the uniform baseline.", ""]
    for vocab in vocabs:
        rows = {s: rs for (v, s), rs in finals.items() if v == vocab}
        v_size = next(iter(rows.values()))[0]["vocab_size"]
        lines += [f"## Vocabulary `{vocab}` ({v_size:,} words; ln V = {math.log(v_size):.2f})", "",
                  "| strategy | held-out −log p | analogy % (coverage) | WS-353 ρ | SimLex ρ | words/s | pairs/s | epoch done | train s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s, rs in rows.items():
            cov = f"{rs[0]['answered']}/{rs[0]['total']}"
            lines.append(
                f"| {s} | {_fmt([r['heldout'] for r in rs])} | {_fmt([r['analogy'] for r in rs], 100, 2)} ({cov}) | "
                f"{_fmt([r['wordsim353'] for r in rs])} | {_fmt([r['simlex999'] for r in rs])} | "
                f"{_mean_std([r['words_per_s'] for r in rs])[0]:,.0f} | {_mean_std([r['pairs_per_s'] for r in rs])[0]:,.0f} | "
                f"{_mean_std([r['epoch_fraction'] for r in rs])[0]:.0%} | {_mean_std([r['seconds'] for r in rs])[0]:.0f} |")
        lines.append("")
        ranks = {"held-out objective (best first)": ranking(finals, vocab, "heldout", False),
                 "analogies": ranking(finals, vocab, "analogy", True),
                 "WordSim-353": ranking(finals, vocab, "wordsim353", True),
                 "SimLex-999": ranking(finals, vocab, "simlex999", True),
                 "speed (words/s)": ranking(finals, vocab, "words_per_s", True)}
        lines.append("Ranking, from the numbers above:")
        lines.append("")
        for what, order in ranks.items():
            lines.append(f"- {what}: " + " > ".join(f"{s} ({x:.3g})" for s, x in order))
        lines.append("")
    lines += literature(finals, vocabs)
    lines += ["", "![held-out objective vs time](heldout_vs_time.png)", "",
              "![analogy accuracy vs time](analogy_vs_time.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def literature(finals, vocabs) -> list[str]:
    def get(vocab, s, key):
        rs = finals.get((vocab, s))
        return _mean_std([r[key] for r in rs])[0] if rs else float("nan")

    v = vocabs[0]
    ns, hs, full = get(v, "ns5", "analogy"), get(v, "hs", "analogy"), get(v, "full", "analogy")
    held = {s: get(v, s, "heldout") for s in ("full", "hs", "ns5", "nce", "sampled")}
    speed = {s: get(v, s, "words_per_s") for s in ("full", "hs", "ns5", "nce", "sampled")}
    fastest = max((s for s in speed if math.isfinite(speed[s])), key=speed.get, default="?")
    best_lm = min((s for s in held if math.isfinite(held[s])), key=held.get, default="?")
    out = ["## Against the literature", "",
           f"- **Mikolov et al. 2013** (1 B words, dim 300): NEG-5 59% vs HS-Huffman 47% on the "
           f"analogies. Here (vocabulary `{v}`): NS-5 {100 * ns:.2f}% vs HS {100 * hs:.2f}%"
           + (" — the same order." if ns > hs else " — a tie." if ns == hs else " — a different order.")
           + " Absolute accuracies are far lower because this corpus is ~750× smaller (1.3 M "
             "tokens) and runs are capped at one epoch / the time budget; analogies need many "
             "occurrences of each question word, so the differences at this size are a few points "
             "at most and partly noise (compare seeds).",
           f"- **Chen, Grangier & Auli 2016** (strategies for large vocabularies): full softmax is "
           f"strong on small vocabularies, HS is the fastest, NS is good for embeddings but not as "
           f"a language model. Here the best held-out objective is **{best_lm}** and the fastest "
           f"trainer is **{fastest}**. NS's held-out objective "
           f"({held['ns5']:.2f}) is "
           + ("worse" if held["ns5"] > min(held["full"], held["hs"]) else "not worse")
           + f" than full softmax ({held['full']:.2f}) and HS ({held['hs']:.2f}): SGNS learns "
             "shifted PMI (u·v ≈ PMI − log K), which is not normalised, so its implied softmax "
             "is a poor language model even when its vectors are good.",
           ]
    if math.isfinite(full) and fastest != "hs":
        out.append(f"- HS is not the fastest here ({fastest} is): on this CPU the per-pair cost is "
                   "dominated by row gathers and scatter-adds (~37 ns per 100-float row each), and "
                   "HS touches ~log2 V ≈ 14 node rows per pair against K + 1 = 6 for NS-5; the "
                   "FLOP advantage of the tree does not show until V is much larger.")
    big, small = vocabs[0], vocabs[-1]
    us_big = 1e6 / get(big, "full", "pairs_per_s")
    done_big = get(big, "full", "epoch_fraction")
    if big != small:
        out.append(f"- Full softmax's cost grows with V: ≈ {us_big:.0f} µs per pair at "
                   f"{finals[(big, 'full')][0]['vocab_size']:,} words, so within the time budget it "
                   f"read {done_big:.0%} of the epoch there (an equal-time comparison), against "
                   f"{1e6 / get(small, 'full', 'pairs_per_s'):.0f} µs and "
                   f"{get(small, 'full', 'epoch_fraction'):.0%} at "
                   f"{finals[(small, 'full')][0]['vocab_size']:,} words, where it is the reference: "
                   f"held-out {get(small, 'full', 'heldout'):.3f} against HS "
                   f"{get(small, 'hs', 'heldout'):.3f}.")
    if get(v, "hs", "analogy") > get(v, "ns5", "analogy"):
        out.append("- HS ahead of NS on analogies here, unlike Mikolov et al.: their own "
               "notes (word2vec's README) say HS is better for infrequent words and NS for frequent "
                   "words; on a 1.3 M-token corpus after one epoch most question words are infrequent, "
                   "and HS's inner-node vectors, shared by many words, are updated by every pair, while "
                   "each NS output vector learns only from its own word's pairs. NS also trails at "
                   "gensim's lr 0.025 with batched updates (the README's performance table: lr 0.035 "
                   "helps).")
    return out


def plot(records: list[dict], out_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, list[dict]] = {}
    for r in records:
        if r["kind"] == "point":
            points.setdefault(r["cell"], []).append(r)
    seeds = sorted({c.split("/")[2] for c in points})
    first_seed = seeds[0] if seeds else "seed0"
    for key, name, ylabel in (("heldout", "heldout_vs_time.png", "held-out −log p(c|w)"),
                              ("analogy", "analogy_vs_time.png", "analogy accuracy")):
        vocabs = list(dict.fromkeys(c.split("/")[0] for c in points))
        fig, axes = plt.subplots(1, len(vocabs), figsize=(6 * len(vocabs), 4.2), squeeze=False)
        for ax, vocab in zip(axes[0], vocabs):
            for cell, rs in points.items():  # one line per strategy: the first seed
                v, strategy, seed = cell.split("/")
                if v != vocab or seed != first_seed:
                    continue
                rs = sorted(rs, key=lambda r: r["seconds"])
                ax.plot([r["seconds"] for r in rs], [r[key] for r in rs], marker="o", label=strategy)
            ax.set_xscale("log")
            ax.set_title(f"vocabulary {vocab} ({first_seed})")
            ax.set_xlabel("training seconds (log scale)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="Python file with get_config(quick)")
    p.add_argument("--quick", action="store_true", help="a tiny grid in under 2 minutes")
    p.add_argument("--out", required=True, help="results directory")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.quick)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    done = {r["cell"] for r in read_results(results) if r["kind"] == "final"}
    # Drop the partial points of a cell that did not finish (it is rerun from scratch).
    kept = [r for r in read_results(results) if r["cell"] in done]
    results.write_text("".join(json.dumps(r) + "\n" for r in kept))
    for vocab_name, settings in cfg["vocabularies"].items():
        data = None
        for strategy in cfg["strategies"]:
            for seed in cfg["seeds"]:
                if f"{vocab_name}/{strategy}/seed{seed}" in done:
                    continue
                data = data or prepare(cfg, settings)
                run_cell(cfg, vocab_name, strategy, seed, data, results)
    records = read_results(results)
    command = "python experiments/compare_losses.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report(cfg, records, out_dir, command)
    plot(records, out_dir)
    print(f"report: {out_dir / 'report.md'}")


if __name__ == "__main__":
    main()
