"""Compare full softmax, hierarchical softmax, negative sampling, NCE and sampled softmax.

    python experiments/research/compare_losses.py --config experiments/research/configs/compare_losses.py --out DIR
    python experiments/research/compare_losses.py --config experiments/research/configs/compare_losses_mid.py --out DIR
    python experiments/research/compare_losses.py --quick --out DIR

The protocol, for each vocabulary of the config:

1. **Splits.** Every 20th stored sentence (1,000-token pieces of the text) is the test split,
   every 20th of the rest the validation split; the vocabulary, the noise distribution and the
   Huffman tree are counted on the training split only, and held-out words outside it are
   dropped as out-of-vocabulary words are.
2. **Held-out pairs** are drawn as training draws them (the training split's subsampling,
   dynamic window, sentence cut and orientation; ``sgns_jax.evaluation.heldout``), and every
   model is scored by its own normalised conditional (NS by softmax(u·h + log q), and also
   "raw", by softmax(u·h)). Baselines: the unigram of predicted words (no context) and ln V.
3. **Budgets.** Each strategy trains at most ``epochs`` epochs, under each of the config's
   ``budgets``: equal time (what fits ``seconds`` of steady-state training: a short calibration
   run measures its words/s, compilation excluded, and the run is given that many words,
   ``run.max_words``, so its learning-rate schedule spans exactly what it trains) and equal
   words (``words`` for every strategy, or what fits ``seconds_cap`` for one too slow for that,
   marked). Configs without ``budgets``: one equal-time budget of ``budget_seconds``.
4. **Learning rate.** Each strategy gets the rate of ``learning_rates`` with the best
   validation objective (seed 0) under the same budget; the sweep is recorded. Vocabularies
   outside ``sweep_vocabularies`` (default: all) take the first swept vocabulary's rates.
5. **Grid.** Every strategy at its rate, over ``seeds``: test objective, analogies, WordSim-353,
   SimLex-999, speed. The report gives mean ± std and a 95% t-interval per cell, and a ranking
   orders two strategies only where Welch's t-test separates them at 95%.
6. **Cost.** Flops and bytes per pair from XLA's cost analysis of each strategy's compiled step
   at each vocabulary (and at ``cost_vocabularies``, costed without training), beside the
   measured seconds per pair; with several vocabularies the report adds the vocabulary axis
   (``vocab_axis.py``): tables by V, gaps to the full softmax, fitted exponents, flips between
   budgets, the literature, four plots against V.

Writes into DIR: ``results.jsonl`` (every measurement, each with the commit that made it;
finished records are skipped on a rerun, so an interrupted grid resumes), ``report.md`` and
its plots. Progress: one line per cell, ``[done/total cells]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np

from sgns_jax.data.corpus import default_cache_dir, encode_corpus
from sgns_jax.errors import TrainingDiverged
from sgns_jax.io_utils import atomic_write
from sgns_jax.evaluation.benchmarks import (SIMLEX, WORDSIM, bundled, evaluate_analogies,
                                            evaluate_word_pairs)
from sgns_jax.evaluation.embeddings import Embeddings
from sgns_jax.evaluation.heldout import HeldoutObjective, heldout_pairs, unigram_objective
from sgns_jax.losses import make_output_layer
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import train

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import vocab_axis  # noqa: E402  (this folder's module: the report along V)


def load_config(path: str | None, quick: bool) -> dict:
    path = path or str(HERE / "configs" / "compare_losses.py")
    return runpy.run_path(path)["get_config"](quick=quick)


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    cut = bool(text) and not text.endswith("\n")
    # ``append`` writes a record and then its newline: a file without one was cut in the middle
    # of a record by a kill. That record is dropped (its work is redone) and the file mended, so
    # the next record does not run on from the cut one.
    records = []
    for number, line in enumerate(lines[:-1] if cut else lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:  # not from a kill (that cuts the last line only)
            sys.exit(f"{path}: line {number} is not a JSON record ({e.msg}); mend or delete that line")
    if cut:
        print(f"{path}: dropping its cut last record (a run was killed while writing it)", file=sys.stderr)
        rewrite(path, records)
    return [_with_budget(r) for r in records]


def _with_budget(record: dict) -> dict:
    """Records of grids from before the budget axis were all trained under equal time."""
    if record["kind"] in ("final", "sweep", "point"):
        record.setdefault("budget", "time")
    cell = record.get("cell")
    if cell and cell.count("/") == 2:
        vocab, strategy, seed = cell.split("/")
        record["cell"] = f"{vocab}/time/{strategy}/{seed}"
    return record


def _blown_up_as_diverged(record: dict) -> dict:
    """A final record whose held-out objective shows blown-up weights (cells trained before
    ``run_cell`` checked for that) is a divergence."""
    if record["kind"] == "final" and blew_up(record["heldout"], record["vocab_size"]):
        return {**record, "kind": "diverged",
                "error": f"held-out {record['heldout']:.4g} nats > 2 ln V: the weights blew up"}
    return record


def rewrite(path: Path, records: list[dict]) -> None:
    """Replace the results with ``records`` whole (atomically: a kill leaves the old file or the
    new, never a cut one)."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


# --- data --------------------------------------------------------------------------------

def splits(cfg: dict, settings: dict) -> tuple:
    """(train, validation, test) of the encoded corpus, and the training split's vocabulary."""
    corpus = encode_corpus(cfg["corpus"] or bundled("wiki.txt.gz"), cache_dir=default_cache_dir(),
                           min_count=1, lowercase=settings.get("lowercase", False))
    if cfg["max_tokens"]:
        corpus = corpus.head(cfg["max_tokens"])
    rest, test = corpus.split_heldout(cfg["heldout_fraction"])
    train_split, validation = rest.split_heldout(cfg["validation_fraction"])
    vocab = train_split.count_vocabulary(settings.get("min_count", 5), settings.get("max_vocab"))
    return train_split, validation, test, vocab


def training_counts(cfg: dict, settings: dict) -> np.ndarray:
    """The counts of the training split's vocabulary under ``settings``."""
    return splits(cfg, settings)[3].counts


def prepare(cfg: dict, settings: dict) -> dict:
    """Splits with the vocabulary of the training split, held-out pairs and baselines."""
    train_split, validation, test, vocab = splits(cfg, settings)
    train_split, validation, test = (c.with_vocabulary(vocab) for c in (train_split, validation, test))
    pairs = {name: heldout_pairs(c, cfg["window"], cfg["sample"], cfg["heldout_pairs"])
             for name, c in (("validation", validation), ("test", test))}
    return {"train": train_split, "pairs": pairs,
            "unigram": {k: unigram_objective(p, vocab.counts, cfg["sample"]) for k, p in pairs.items()}}


def objectives(strategy: dict, data: dict, split: str) -> dict[str, HeldoutObjective]:
    """The model's own conditional ("heldout"); where that adds a bias to the logits (NS's
    log q), also the plain softmax(u·h) ("heldout_raw")."""
    options = {k: v for k, v in loss_options(strategy).items() if k != "name"}
    layer = make_output_layer(strategy["name"], data["train"].vocab.counts, **options)
    pairs = data["pairs"][split]
    out = {"heldout": HeldoutObjective(layer, pairs)}
    if not layer.normalised and layer.conditional_log_bias() is not None:
        out["heldout_raw"] = HeldoutObjective(layer, pairs, raw=True)
    return out


# --- runs --------------------------------------------------------------------------------

def loss_options(strategy: dict) -> dict:
    """A strategy's [loss] options (its entry may also carry its own ``learning_rates``)."""
    return {k: v for k, v in strategy.items() if k != "learning_rates"}


def learning_rates(cfg: dict, name: str) -> list[float]:
    """The rates swept for a strategy: its own list if its entry has one, else the config's."""
    return cfg["strategies"][name].get("learning_rates", cfg["learning_rates"])


def train_config(cfg: dict, strategy: dict, lr: float, seed: int, **run) -> TrainConfig:
    return TrainConfig().replace(
        data={"corpus": "<in memory>", "window": cfg["window"], "sample": cfg["sample"]},
        model={"dim": cfg["dim"]}, loss=loss_options(strategy),
        optim={"learning_rate": lr, "batch_size": cfg["batch_size"],
               "steps_per_chunk": cfg["steps_per_chunk"]},
        # One stream: exact sequential SGD within each step, the same for every strategy.
        run={"epochs": cfg["epochs"], "seed": seed, "quiet": True, "parallelism": "single", **run})


def budgets(cfg: dict) -> dict[str, dict]:
    """The budgets every cell is trained under: ``{"seconds": s}`` (equal time: the words a
    strategy trains in s seconds of steady-state training) or ``{"words": n, "seconds_cap": s}``
    (equal words: n words, or what fits s seconds for a strategy too slow for that). Configs
    without ``budgets`` have one equal-time budget of ``budget_seconds``."""
    return cfg.get("budgets") or {"time": {"seconds": cfg["budget_seconds"]}}


def budget_words(cfg: dict, budget: dict, calibration: dict) -> tuple[int, bool]:
    """The words a cell trains under ``budget`` (never more than ``epochs`` epochs), and whether
    a cap cut an equal-words budget short."""
    planned = calibration["planned_words"]
    rate = calibration["train_words"]  # words per steady-state second
    if "words" not in budget:
        return int(min(planned, rate * budget["seconds"])), False
    fits = rate * budget.get("seconds_cap", float("inf"))
    words = int(min(planned, budget["words"], fits))
    return words, words < min(planned, budget["words"])


@functools.lru_cache(maxsize=None)
def commit() -> str:
    """The repository's commit when this process started, ``+dirty`` when the tree had
    uncommitted changes to tracked files (every cell records the version that trained it; read
    once: a commit made while the grid runs did not train it)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def corpus_name(cfg: dict) -> str:
    """The corpus as a report names it: its path relative to the repository."""
    if not cfg["corpus"]:
        return "the bundled Wikipedia text (`wiki.txt.gz`, 1.34 M tokens)"
    import os

    root = Path(__file__).resolve().parents[2]
    return f"`{os.path.relpath(Path(cfg['corpus']).resolve(), root)}` (relative to the repository)"


def calibrate(cfg: dict, vocab_name: str, name: str, data: dict, out: Path) -> dict:
    """Steady-state words/s and pairs/s of a strategy: its rate over the second half of a
    ``calibration_seconds`` run (compilation, the first chunks and the prefetch's start left
    out), with a callback after every chunk as the grid's cells have. Measure with nothing else
    running: every equal-time budget is this rate × its seconds."""
    strategy = cfg["strategies"][name]
    seconds = cfg["calibration_seconds"]
    events = []
    r = train(train_config(cfg, strategy, min(learning_rates(cfg, name)), 0, max_seconds=seconds),
              data["train"], lambda e: events.append((e.seconds, e.words)))
    whole = r.words / max(r.seconds, 1e-9)
    (t0, w0), (t1, w1) = (events[len(events) // 2], events[-1]) if events else ((0.0, 0), (0.0, 0))
    steady = (w1 - w0) / (t1 - t0) if t1 > t0 and w1 > w0 else whole
    scale = steady / whole if whole > 0 else 1.0  # the whole run's rates → the steady ones
    record = {"kind": "calibration", "vocab": vocab_name, "strategy": name,
              "words_per_s": r.words_per_second * scale, "train_words": steady,
              "pairs_per_s": scale * r.examples / max(r.seconds, 1e-9),
              "planned_words": cfg["epochs"] * len(data["train"]), "commit": commit()}
    append(out, record)
    return record


def measure_cost(cfg: dict, vocab_name: str, name: str, counts: np.ndarray, out: Path) -> dict:
    """XLA's cost analysis of one compiled training step of the strategy at this vocabulary:
    flops and bytes accessed per pair (``sgns_jax.engine.lowering.step_cost``)."""
    from sgns_jax.engine.lowering import step_cost

    cost = step_cost(train_config(cfg, cfg["strategies"][name], 0.025, 0), counts)
    record = {"kind": "cost", "vocab": vocab_name, "strategy": name, "vocab_size": int(len(counts)),
              "flops_per_pair": cost.flops, "bytes_per_pair": cost.bytes_accessed,
              "conditional": cost.conditional, "commit": commit()}
    append(out, record)
    return record


def sweep_cell(cfg: dict, vocab_name: str, budget: str, name: str, lr: float, data: dict,
               max_words: int, out: Path) -> None:
    strategy = cfg["strategies"][name]
    try:
        r = train(train_config(cfg, strategy, lr, 0, max_words=max_words), data["train"])
        scores = {k: f(r.params) for k, f in objectives(strategy, data, "validation").items()}
        seconds = r.seconds
    except TrainingDiverged:  # a rate too high for this strategy: recorded, never chosen
        scores, seconds = {"heldout": float("inf"), "diverged": True}, float("nan")
    append(out, {"kind": "sweep", "vocab": vocab_name, "budget": budget, "strategy": name,
                 "learning_rate": lr, "seconds": seconds, "words": max_words, "budget_words": max_words,
                 "commit": commit(), **scores})
    print(f"sweep {vocab_name}/{budget}/{name} lr {lr}: validation {scores['heldout']:.4f}", flush=True)


def cell_name(vocab: str, budget: str, strategy: str, seed: int) -> str:
    return f"{vocab}/{budget}/{strategy}/seed{seed}"


def run_cell(cfg: dict, vocab_name: str, budget: str, name: str, lr: float, seed: int, data: dict,
             max_words: int, capped: bool, out: Path) -> None:
    cell = cell_name(vocab_name, budget, name, seed)
    strategy = cfg["strategies"][name]
    train_corpus = data["train"]
    scorers = objectives(strategy, data, "test")
    next_eval = [1.0 / cfg["eval_points"]]

    def evaluate(params) -> dict:
        host = {k: np.asarray(v) for k, v in params.items()}
        a = evaluate_analogies(Embeddings(train_corpus.vocab.words, host["w_in"]), restrict_vocab=30000)
        return {**{k: f(host) for k, f in scorers.items()},
                "analogy": a.accuracy, "answered": a.answered, "total": a.total,
                "correct": a.correct}

    def callback(event) -> None:
        progress = event.words / max_words
        if next_eval[0] <= progress < 1.0:
            while next_eval[0] <= progress:
                next_eval[0] += 1.0 / cfg["eval_points"]
            append(out, {"cell": cell, "kind": "point", "seconds": event.seconds,
                         "words": event.words, "train_loss": event.loss, **evaluate(event.params)})

    try:
        result = train(train_config(cfg, strategy, lr, seed, max_words=max_words), train_corpus, callback)
    except TrainingDiverged as e:  # a seed the swept rate (chosen on seed 0) is too high for
        diverged, error = {}, str(e)
    else:
        final = evaluate(result.params)
        diverged = {"heldout": final["heldout"]} if blew_up(final["heldout"], len(train_corpus.vocab)) else None
        error = f"held-out {final['heldout']:.4g} nats > 2 ln V: the weights blew up"
    if diverged is not None:
        append(out, {"cell": cell, "kind": "diverged", "vocab": vocab_name, "budget": budget,
                     "strategy": name, "seed": seed, "commit": commit(), "learning_rate": lr,
                     "budget_words": max_words, **diverged, "error": error})
        print(f"{cell} (lr {lr}): {error}; left out of the cell's statistics", flush=True)
        return
    emb = Embeddings(train_corpus.vocab.words, result.params["w_in"])
    ws = evaluate_word_pairs(emb, bundled(WORDSIM), restrict_vocab=None)
    sl = evaluate_word_pairs(emb, bundled(SIMLEX), restrict_vocab=None)
    append(out, {"cell": cell, "kind": "point", "seconds": result.seconds, "words": result.words,
                 "train_loss": result.mean_loss, **final})
    append(out, {"cell": cell, "kind": "final", "vocab": vocab_name, "budget": budget,
                 "strategy": name, "seed": seed, "capped": capped, "commit": commit(), "learning_rate": lr,
                 "budget_words": max_words, "vocab_size": len(train_corpus.vocab),
                 "seconds": result.seconds, "compile_seconds": result.compile_seconds,
                 "words": result.words, "epoch_fraction": result.words / (len(train_corpus) * cfg["epochs"]),
                 "words_per_s": result.words_per_second, "pairs_per_s": result.examples / result.seconds,
                 "train_loss": result.mean_loss, **final, "wordsim353": ws.spearman,
                 "wordsim_pairs": ws.pairs, "simlex999": sl.spearman, "simlex_pairs": sl.pairs,
                 "unigram": data["unigram"]["test"]})
    raw = f", raw softmax(u·h) {final['heldout_raw']:.3f}" if "heldout_raw" in final else ""
    print(f"{cell} (lr {lr}): heldout {final['heldout']:.3f}{raw} (unigram {data['unigram']['test']:.3f}), "
          f"analogy {100 * final['analogy']:.2f}%, ws353 {ws.spearman:.3f}, simlex {sl.spearman:.3f}, "
          f"{result.words_per_second:,.0f} words/s, {result.words / (len(train_corpus) * cfg['epochs']):.0%} "
          f"of the epochs in {result.seconds:.0f} s", flush=True)


def unstable_rates(records: list[dict], vocabs: set[str], budget: str) -> set[tuple[str, float]]:
    """(strategy, rate) pairs at which some seed of a grid cell diverged (or blew up) in these
    vocabularies under this budget: the sweep chose the rate on seed 0, and another seed
    showed it is not stable."""
    return {(r["strategy"], r["learning_rate"]) for r in records
            if r["kind"] == "diverged" and r["vocab"] in vocabs and r["budget"] == budget}


def best_learning_rates(records: list[dict], vocab: str, budget: str = "time",
                        unstable: set[tuple[str, float]] = frozenset()) -> dict[str, float]:
    """Per strategy, the swept rate with the lowest validation objective, among the rates not
    in ``unstable``."""
    best: dict[str, tuple[float, float]] = {}
    for r in records:
        if (r["kind"] == "sweep" and r["vocab"] == vocab and r.get("budget", "time") == budget
                and math.isfinite(r["heldout"]) and (r["strategy"], r["learning_rate"]) not in unstable):
            if r["strategy"] not in best or r["heldout"] < best[r["strategy"]][0]:
                best[r["strategy"]] = (r["heldout"], r["learning_rate"])
    return {s: lr for s, (_, lr) in best.items()}


def chosen_rates(cfg: dict, records: list[dict], vocab: str, rate_vocab: str, budget: str) -> dict[str, float]:
    """The rate every cell of (vocab, budget) trains at: the sweep's best on ``rate_vocab``
    among the rates no seed diverged at (in either vocabulary); a strategy with no such rate
    left trains at its lowest rate (its diverged seeds are then reported as such)."""
    unstable = unstable_rates(records, {vocab, rate_vocab}, budget)
    best = best_learning_rates(records, rate_vocab, budget, unstable)
    chosen = {}
    for name in cfg["strategies"]:
        rates = learning_rates(cfg, name)
        stable = [lr for lr in rates if (name, lr) not in unstable]
        chosen[name] = best.get(name, stable[0] if stable else min(rates))
    return chosen


def trained_for(record: dict, words: int) -> bool:
    """Whether a sweep or final record was trained under a budget of ``words`` (records from
    before ``budget_words`` was kept: the words they trained, within a chunk's overshoot)."""
    if "budget_words" in record:
        return record["budget_words"] == words
    return abs(record["words"] - words) <= 0.01 * words


def cells_to_train(cfg: dict, records: list[dict], vocab: str, budget: str, chosen: dict[str, float],
                   words: dict[str, int]) -> list[tuple[str, int]]:
    """(strategy, seed) of the cells of (vocab, budget) not yet done at their chosen rate and
    their budget's ``words``: no final record for them and no divergence at the rate (a
    divergence counts whatever the words: the rate stays unstable)."""
    done = {(r["strategy"], r["seed"]) for r in records
            if r["kind"] in ("final", "diverged") and r["vocab"] == vocab and r["budget"] == budget
            and r["learning_rate"] == chosen.get(r["strategy"])
            and (r["kind"] == "diverged" or trained_for(r, words[r["strategy"]]))}
    return [(name, seed) for name in cfg["strategies"] for seed in cfg["seeds"] if (name, seed) not in done]


def blew_up(heldout: float, vocab_size: int) -> bool:
    """A held-out objective no trained model reaches: non-finite or above twice the uniform
    guess's ln V (training ended finite, but its weights had blown up)."""
    return not math.isfinite(heldout) or heldout > 2 * math.log(vocab_size)


# --- statistics --------------------------------------------------------------------------

def mean_std(values: list[float]) -> tuple[float, float]:
    a = np.array(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """The two-sided t confidence interval of the mean (a point when n = 1)."""
    from scipy import stats

    m, s = mean_std(values)
    n = len(values)
    if n < 2:
        return m, m
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s / math.sqrt(n)
    return m - half, m + half


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of Welch's t-test (nan with fewer than 2 values a side; 0 when both sides
    are constant and differ)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def ranking(rows: dict[str, list[float]], higher_is_better: bool, alpha: float = 0.05) -> str:
    """Strategies by mean, best first; ``>`` where Welch's test separates neighbours at
    1 − alpha, ``≈`` (not separable) where it does not."""
    order = sorted(rows, key=lambda s: np.mean(rows[s]), reverse=higher_is_better)
    out = f"{order[0]} ({np.mean(rows[order[0]]):.4g})"
    for a, b in zip(order, order[1:]):
        p = welch_p(rows[a], rows[b])
        sep = ">" if p < alpha else "≈"
        out += f" {sep} {b} ({np.mean(rows[b]):.4g})"
    return out


def separated(rows: dict[str, list[float]], a: str, b: str, alpha: float = 0.05) -> bool:
    return a in rows and b in rows and welch_p(rows[a], rows[b]) < alpha


# --- report ------------------------------------------------------------------------------

def _cell(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    v = [x * scale for x in values]
    m, s = mean_std(v)
    if len(v) < 2:
        return f"{m:.{digits}f}"
    lo, hi = t_interval(v)
    return f"{m:.{digits}f} ± {s:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def finals_by(records: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Final records by (vocabulary, budget, strategy)."""
    finals: dict[tuple[str, str, str], list[dict]] = {}
    for r in records:
        if r["kind"] == "final":
            finals.setdefault((r["vocab"], r["budget"], r["strategy"]), []).append(r)
    return finals


def write_report(cfg: dict, records: list[dict], out_dir: Path, command: str) -> None:
    finals = finals_by(records)
    order = {name: i for i, name in enumerate([*cfg["vocabularies"], *budgets(cfg), *cfg["strategies"]])}
    finals = dict(sorted(finals.items(), key=lambda kv: tuple(order.get(x, len(order)) for x in kv[0])))
    vocabs = list(dict.fromkeys(v for v, _, _ in finals))
    budget_names = list(dict.fromkeys(b for _, b, _ in finals))
    corpus = corpus_name(cfg)
    if cfg["max_tokens"]:
        corpus += f" (its first {cfg['max_tokens']:,} tokens)"
    commits = sorted({r.get("commit", "not recorded") for r in records if r["kind"] == "final"})
    rule = "; ".join(vocab_axis.budget_text(name, b) for name, b in budgets(cfg).items())
    lines = ["# Comparing the softmax strategies", "",
             f"Command: `{command}`", "",
             f"Corpus: {corpus}; "
             f"{100 * cfg['heldout_fraction']:.0f}% of the stored sentences held out for the test, "
             f"{100 * cfg['validation_fraction']:.0f}% of the rest for validation; vocabulary, noise "
             f"distribution and Huffman tree counted on the training split. Skip-gram, dim "
             f"{cfg['dim']}, window {cfg['window']}, sample {cfg['sample']}, SGD with a linearly "
             f"decayed learning rate, batches of {cfg['batch_size']} pairs; each run trains at most "
             f"{cfg['epochs']} epoch(s), under each budget: {rule} (the schedule spans what a run "
             f"trains); seeds {cfg['seeds']}.", "",
             f"Every cell was trained by commit {', '.join(f'`{c}`' for c in commits)} "
             "(`+dirty`: with uncommitted changes; each record in results.jsonl names its own).", "",
             grid_time(cfg, records), "",
             *[line + "\n" for line in budgets_held(cfg, records)],
             "Held-out objective: mean −log p(c | w) on "
             f"{cfg['heldout_pairs']:,} test pairs drawn as training draws them (subsampled with "
             "the training counts), under each model's own normalised conditional: softmax(u·h) "
             "for full, NCE and sampled softmax, the tree for HS, and softmax(u·h + log q) for NS "
             "(its implied conditional: at the SGNS optimum u·h = log p(c|w) − log q(c) − log K). "
             "Lower is better. Baselines: **unigram** (the distribution of the predicted words, "
             "counts × keep probability of the training split — no context) and **uniform** "
             "(ln V).", "",
             "Cells: mean ± std [95% t-interval] over the seeds. Rankings order two neighbours "
             "(`>`) only where Welch's t-test separates them at 95%; `≈` means not separable.", ""]
    diverged = [r for r in records if r["kind"] == "diverged"]
    if diverged:
        lines += ["Diverged (a loss that became non-finite, or a held-out objective above 2 ln V): "
                  + "; ".join(f"`{r['cell']}` at lr {r['learning_rate']}" for r in diverged) + ". "
                  "The sweep chooses each rate on seed 0; a rate at which any seed diverged is not "
                  "chosen, and the strategy's cells are trained again at the best remaining rate of "
                  "its sweep (the tables give the rate used). Where no rate is left, the cells train "
                  "at the lowest and a diverged seed is left out of its cell's statistics.", ""]
    lines += vocab_axis.report(cfg, records)
    for vocab in vocabs:
        for budget in budget_names:
            if any(v == vocab and b == budget for v, b, _ in finals):
                lines += vocab_section(cfg, records, finals, vocab, budget)
    first_budget = {(v, s): rs for (v, b, s), rs in finals.items() if b == budget_names[0]}
    lines += literature(cfg, first_budget, vocabs)
    lines += ["", "![held-out objective vs time](heldout_vs_time.png)", "",
              "![analogy accuracy vs time](analogy_vs_time.png)", ""]
    atomic_write(out_dir / "report.md", "\n".join(lines).encode())


def grid_time(cfg: dict, records: list[dict]) -> str:
    """The training time the grid's records add up to (the wall time is longer: compiling,
    evaluating at the cells' points, preparing the splits)."""
    def total(kind: str) -> float:
        return sum(r["seconds"] for r in records if r["kind"] == kind and math.isfinite(r.get("seconds", math.nan)))

    calibrations = cfg["calibration_seconds"] * sum(r["kind"] == "calibration" for r in records)
    sweeps, cells = total("sweep"), total("final")
    return (f"Training time in these records: {(calibrations + sweeps + cells) / 60:.0f} min "
            f"(calibrations {calibrations / 60:.0f}, sweeps {sweeps / 60:.0f}, cells {cells / 60:.0f}; "
            "compiling, the cells' evaluations and diverged runs not counted).")


def budgets_held(cfg: dict, records: list[dict], tolerance: float = 0.25) -> list[str]:
    """Whether the cells a budget's seconds bound (equal time; equal words cut by the cap)
    trained about those seconds. A budget is words, from a calibrated steady rate: a calibration
    measured under other conditions than the cells (another job on the CPU) makes "equal time"
    unequal, and the report says so rather than rank on it."""
    lines = []
    for name, budget in budgets(cfg).items():
        target = budget.get("seconds_cap") if "words" in budget else budget["seconds"]
        bound = [r for r in records if r["kind"] == "final" and r["budget"] == name
                 and (r.get("capped") if "words" in budget else r["epoch_fraction"] < 0.999)]
        if not target or not bound:
            continue
        seconds: dict[tuple[str, str], list[float]] = {}
        for r in bound:
            seconds.setdefault((r["vocab"], r["strategy"]), []).append(r["seconds"])
        off = {k: float(np.mean(v)) for k, v in seconds.items() if abs(np.mean(v) / target - 1) > tolerance}
        every = [r["seconds"] for r in bound]
        spread = (f"the {len(bound)} cells its {target:g} s bound trained {min(every):.0f}–"
                  f"{max(every):.0f} s (median {np.median(every):.0f})" if len(bound) > 1 else
                  f"the one cell its {target:g} s bound trained {every[0]:.0f} s")
        if off:
            lines.append(f"**Budget `{name}` did not hold**: {spread}; off by more than "
                         f"{tolerance:.0%} (mean of the seeds): "
                         + ", ".join(f"{s} at `{v}` {t:.0f} s" for (v, s), t in sorted(off.items()))
                         + ". Their calibrated rates differed from the cells' own (measure with "
                         "nothing else running); comparisons under this budget are not at equal time.")
        else:
            lines.append(f"Budget `{name}` held: {spread}, {'each ' if len(bound) > 1 else ''}"
                         f"within {tolerance:.0%}.")
    return lines


def vocab_section(cfg: dict, records: list[dict], finals, vocab: str, budget: str) -> list[str]:
    rows = {s: rs for (v, b, s), rs in finals.items() if v == vocab and b == budget}
    first = next(iter(rows.values()))[0]
    v_size = first["vocab_size"]
    lines = [f"## Vocabulary `{vocab}` ({v_size:,} words), budget `{budget}`", "",
             "| strategy | lr | held-out −log p | analogy % (coverage) | WS-353 ρ | SimLex ρ | words/s | epochs done | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s, rs in rows.items():
        cov = f"{rs[0]['answered']}/{rs[0]['total']}"
        lines.append(
            f"| {s} | {rs[0]['learning_rate']} | {_cell([r['heldout'] for r in rs])} | "
            f"{_cell([r['analogy'] for r in rs], 100, 2)} ({cov}) | {_cell([r['wordsim353'] for r in rs])} | "
            f"{_cell([r['simlex999'] for r in rs])} | {mean_std([r['words_per_s'] for r in rs])[0]:,.0f} | "
            f"{mean_std([r['epoch_fraction'] for r in rs])[0] * cfg['epochs']:.2f} | "
            f"{mean_std([r['seconds'] for r in rs])[0]:.0f} |")
        if "heldout_raw" in rs[0]:
            lines.append(f"| {s}, scored as softmax(u·h) (raw) | | {_cell([r['heldout_raw'] for r in rs])} | | | | | | |")
    lines.append(f"| unigram (no context) | | {first['unigram']:.3f} | | | | | | |")
    lines.append(f"| uniform (ln V) | | {math.log(v_size):.3f} | | | | | | |")
    lines.append("")
    sweep = [r for r in records if r["kind"] == "sweep" and r["vocab"] == vocab and r["budget"] == budget]
    if sweep:
        lrs = sorted({r["learning_rate"] for r in sweep})
        lines += ["Learning-rate sweep (validation objective, seed 0; in bold the rate used above: the "
                  "lowest objective among the rates no seed diverged at):", "",
                  "| strategy | " + " | ".join(f"lr {lr}" for lr in lrs) + " |",
                  "|---|" + "---|" * len(lrs)]
        best = {s: rs[0]["learning_rate"] for s, rs in rows.items()}
        for s in rows:
            cells = []
            for lr in lrs:
                hit = [r["heldout"] for r in sweep if r["strategy"] == s and r["learning_rate"] == lr]
                text = ("diverged" if hit and math.isinf(hit[0]) else f"{hit[0]:.4f}") if hit else "—"
                cells.append(f"**{text}**" if hit and best.get(s) == lr else text)
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    metric = {"held-out objective (lower first)": ("heldout", False), "analogies": ("analogy", True),
              "WordSim-353": ("wordsim353", True), "SimLex-999": ("simlex999", True),
              "speed (words/s)": ("words_per_s", True)}
    lines += ["Rankings (`>`: separated by Welch's test at 95%; `≈`: not separable):", ""]
    for what, (key, higher) in metric.items():
        values = {s: [r[key] for r in rs] for s, rs in rows.items()
                  if all(math.isfinite(r[key]) for r in rs)}
        if key == "heldout":
            values["unigram"] = [first["unigram"]] * max(len(v) for v in values.values())
        lines.append(f"- {what}: {ranking(values, higher)}")
    lines.append("")
    return lines


def literature(cfg: dict, finals, vocabs) -> list[str]:
    def vals(vocab, s, key):
        return [r[key] for r in finals.get((vocab, s), [])]

    def mean(vocab, s, key):
        v = vals(vocab, s, key)
        return float(np.mean(v)) if v else float("nan")

    out = ["## Against the literature", ""]
    v = vocabs[0]
    an = {s: vals(v, s, "analogy") for s in ("ns5", "ns15", "hs") if vals(v, s, "analogy")}
    order = ranking(an, True) if len(an) > 1 else "n/a"
    out.append(
        "- **Mikolov et al. 2013** (*Distributed Representations of Words and Phrases*, Table 1; "
        "1 B words, dim 300, analogies): without subsampling NEG-5 59%, NEG-15 61%, HS-Huffman "
        "47%, NCE-5 53%; with subsampling 1e-5, NEG-5 60%, NEG-15 61%, HS-Huffman 55%. Their "
        f"order is NEG-15 > NEG-5 > HS. Here (vocabulary `{v}`, sample {cfg['sample']}): {order}. "
        "Absolute accuracies are far lower on a corpus hundreds of times smaller; where `≈` "
        "appears the corpus does not separate the strategies.")
    # Their strategies only (target sampling is ``sampled``): the best among them, not the grid's.
    held = {s: vals(v, s, "heldout") for s in ("full", "hs", "dsoftmax", "sampled", "nce") if vals(v, s, "heldout")}
    if held:
        best = min(held, key=lambda s: np.mean(held[s]))
        ties = [s for s in held if s != best and not separated(held, best, s)]
        out.append(
            "- **Chen, Grangier & Auli 2016** (*Strategies for Training Large Vocabulary Neural "
            "Language Models*) compared softmax, hierarchical softmax, differentiated softmax, "
            "target sampling, NCE and self-normalisation for language models, each tuned — not "
            "negative sampling. They found the full softmax competitive at 10k and 100k words and "
            "poor at 800k, and hierarchical softmax holding up at large vocabularies. Of their "
            f"strategies trained here ({', '.join(held)}), the best held-out objective at "
            f"{finals[(v, best)][0]['vocab_size']:,} words is **{best}** "
            f"({np.mean(held[best]):.3f})" +
            (f", not separable from {', '.join(ties)}" if ties else ", separated from every other strategy") + ".")
    for vocab in vocabs:
        ns, nce = vals(vocab, "ns5", "heldout"), vals(vocab, "nce", "heldout")
        raw = vals(vocab, "ns5", "heldout_raw")
        uni = mean(vocab, "ns5", "unigram") if ns else float("nan")
        if ns and nce:
            rows = {"ns5": ns, "nce": nce}
            versus = ("not separable from NCE" if not separated(rows, "ns5", "nce") else
                      "better than NCE" if np.mean(ns) < np.mean(nce) else "worse than NCE")
            beats_unigram = np.mean(ns) < uni
            out.append(
                f"- NS as a language model (vocabulary `{vocab}`): scored by its implied "
                f"conditional softmax(u·h + log q) it reaches {np.mean(ns):.3f} nats — {versus} "
                f"({np.mean(nce):.3f}) and {'below' if beats_unigram else 'above'} the unigram "
                f"baseline ({uni:.3f}); scored as raw softmax(u·h) it gets {np.mean(raw):.3f}. "
                "SGNS's dot products estimate log p(c|w) − log q(c) − log K (Levy & Goldberg "
                "2014), so the raw score charges it for a term it never had to learn.")
    for vocab in vocabs:
        full = vals(vocab, "full", "heldout")
        if not full:
            continue
        uni = mean(vocab, "full", "unigram")
        beats = [s for s in ("hs", "ns5", "ns15", "nce", "sampled")
                 if vals(vocab, s, "heldout") and np.mean(vals(vocab, s, "heldout")) < np.mean(full)
                 and separated({s: vals(vocab, s, "heldout"), "full": full}, s, "full")]
        done = mean(vocab, "full", "epoch_fraction")
        out.append(
            f"- Full softmax (vocabulary `{vocab}`, {finals[(vocab, 'full')][0]['vocab_size']:,} words) "
            f"at {1e6 / mean(vocab, 'full', 'pairs_per_s'):.0f} µs per pair trained {done:.0%} of the "
            f"planned words in the budget; held-out {np.mean(full):.3f} against the unigram's {uni:.3f}"
            + (f"; significantly beaten by {', '.join(beats)} in equal time." if beats else
               "; no approximation beats it significantly."))
    return out


def plot(records: list[dict], out_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, list[dict]] = {}
    trained = {r["cell"] for r in records if r["kind"] == "final"}  # not a diverged seed's points
    for r in records:
        if r["kind"] == "point" and r["cell"] in trained:
            points.setdefault(r["cell"], []).append(r)
    seeds = sorted({c.split("/")[3] for c in points})
    budget_names = {c.split("/")[1] for c in points}
    first_budget = "time" if "time" in budget_names or not budget_names else sorted(budget_names)[0]
    first_seed = seeds[0] if seeds else "seed0"
    for key, name, ylabel in (("heldout", "heldout_vs_time.png", "held-out −log p(c|w)"),
                              ("analogy", "analogy_vs_time.png", "analogy accuracy")):
        vocabs = list(dict.fromkeys(c.split("/")[0] for c in points))
        fig, axes = plt.subplots(1, len(vocabs), figsize=(6 * len(vocabs), 4.2), squeeze=False)
        for ax, vocab in zip(axes[0], vocabs):
            for cell, rs in points.items():  # one line per strategy: the first seed
                v, budget, strategy, seed = cell.split("/")
                if v != vocab or seed != first_seed or budget != first_budget:
                    continue
                rs = sorted(rs, key=lambda r: r["seconds"])
                ax.plot([r["seconds"] for r in rs], [r[key] for r in rs], marker="o", label=strategy)
            if key == "heldout":
                uni = [r["unigram"] for r in records if r["kind"] == "final" and r["vocab"] == vocab]
                if uni:
                    ax.axhline(uni[0], color="grey", linestyle="--", label="unigram")
            ax.set_xscale("log")
            ax.set_title(f"vocabulary {vocab}, budget {first_budget} ({first_seed})")
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
    p.add_argument("--quick", action="store_true", help="a tiny grid in under a minute")
    p.add_argument("--out", required=True, help="results directory")
    args = p.parse_args(argv)
    commit()  # the version of the code this process runs
    cfg = load_config(args.config, args.quick)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    records = [_blown_up_as_diverged(r) for r in read_results(results)]
    finished = {r["cell"] for r in records if r["kind"] in ("final", "diverged")}
    # Drop the partial points of a cell that did not finish (it is rerun from scratch).
    records = [r for r in records if r["kind"] != "point" or r["cell"] in finished]
    rewrite(results, records)
    swept_vocabs = cfg.get("sweep_vocabularies") or list(cfg["vocabularies"])
    total = len(cfg["vocabularies"]) * len(budgets(cfg)) * len(cfg["strategies"]) * len(cfg["seeds"])
    done = set(finished)  # cells trained (a cell trained again at a lowered rate counts once)

    def progress(what: str) -> None:
        print(f"[{len(done)}/{total} cells] {what}", flush=True)

    for vocab_name, settings in cfg["vocabularies"].items():
        data = None
        calib = {r["strategy"]: r for r in records if r["kind"] == "calibration" and r["vocab"] == vocab_name}
        costs = {r["strategy"] for r in records if r["kind"] == "cost" and r["vocab"] == vocab_name}
        for name in cfg["strategies"]:
            if name not in calib:
                data = data or prepare(cfg, settings)
                progress(f"{vocab_name}/{name}: calibrating")
                calib[name] = calibrate(cfg, vocab_name, name, data, results)
            if name not in costs:
                data = data or prepare(cfg, settings)
                measure_cost(cfg, vocab_name, name, data["train"].vocab.counts, results)
        for budget_name, budget in budgets(cfg).items():
            words = {name: budget_words(cfg, budget, calib[name]) for name in cfg["strategies"]}
            # A sweep trained under other words (a budget recalibrated) is swept again.
            records = read_results(results)  # with this vocabulary's calibrations and costs
            current = [r for r in records if r["kind"] != "sweep" or r["vocab"] != vocab_name
                       or r.get("budget", "time") != budget_name or trained_for(r, words[r["strategy"]][0])]
            if len(current) < len(records):
                records = current
                rewrite(results, records)
            swept = {(r["strategy"], r["learning_rate"]) for r in records if r["kind"] == "sweep"
                     and r["vocab"] == vocab_name and r.get("budget", "time") == budget_name}
            if vocab_name in swept_vocabs:
                for name in cfg["strategies"]:
                    rates = learning_rates(cfg, name)
                    for lr in rates if len(rates) > 1 else []:
                        if (name, lr) not in swept:
                            data = data or prepare(cfg, settings)
                            progress(f"{vocab_name}/{budget_name}/{name}: sweep lr {lr}")
                            sweep_cell(cfg, vocab_name, budget_name, name, lr, data, words[name][0], results)
            # A vocabulary without a sweep of its own takes the rates of the first swept one.
            rate_vocab = vocab_name if vocab_name in swept_vocabs else swept_vocabs[0]
            while True:  # until every cell is done at its rate: a divergence lowers the rate
                records = read_results(results)
                chosen = chosen_rates(cfg, records, vocab_name, rate_vocab, budget_name)
                todo = cells_to_train(cfg, records, vocab_name, budget_name, chosen,
                                      {name: w for name, (w, _) in words.items()})
                if not todo:
                    break
                # A cell trained at a rate no longer chosen (a rate was added, or a seed
                # diverged at it) or under other words (a budget recalibrated) is trained again:
                # its points and final go, a divergence stays (it keeps the rate from being
                # chosen again).
                again = {cell_name(vocab_name, budget_name, n, seed) for n, seed in todo}
                records = [r for r in records if r.get("cell") not in again or r["kind"] == "diverged"]
                rewrite(results, records)
                for name, seed in todo:
                    data = data or prepare(cfg, settings)
                    progress(f"{vocab_name}/{budget_name}/{name}/seed{seed}: {words[name][0]:,} words"
                             f" at lr {chosen[name]}")
                    run_cell(cfg, vocab_name, budget_name, name, chosen[name], seed, data, *words[name], results)
                    done.add(cell_name(vocab_name, budget_name, name, seed))
    records = read_results(results)
    # Cost analysis at further vocabulary sizes (no training): the exponents' fit.
    costed = {(r["vocab"], r["strategy"]) for r in records if r["kind"] == "cost"}
    for vocab_name, settings in cfg.get("cost_vocabularies", {}).items():
        counts = None
        for name in cfg["strategies"]:
            if (vocab_name, name) not in costed:
                counts = counts if counts is not None else training_counts(cfg, settings)
                measure_cost(cfg, vocab_name, name, counts, results)
    records = read_results(results)
    command = "python experiments/research/compare_losses.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report(cfg, records, out_dir, command)
    plot(records, out_dir)
    vocab_axis.plot(cfg, records, out_dir)
    print(f"report: {out_dir / 'report.md'}")


if __name__ == "__main__":
    main()
