"""The strategy comparison along the vocabulary axis: how each strategy's held-out objective,
gap to the exact softmax and cost per pair change with V, under both budgets.

Used by ``compare_losses.py`` when a grid has more than one vocabulary. Everything here reads
the grid's records (``results.jsonl``): ``final`` cells (vocab, budget, strategy, seed),
``calibration`` (steady-state pairs/s) and ``cost`` (XLA's cost analysis of one compiled step,
per pair). Statements are generated from the numbers; a ranking or a gap is called only where
Welch's test separates the two sides at 95%.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

# The README's complexity claims, by loss name: the text and the exponent of V it implies
# (log V counts as exponent 0: it grows slower than any power).
CLAIMED = {"full": ("O(V·D)", 1.0), "hs": ("O(log V · D)", 0.0), "ns": ("O(K·D)", 0.0),
           "nce": ("O(K·D)", 0.0), "sampled": ("O(S·D) shared", 0.0),
           "blackout": ("O(S·D) shared", 0.0), "adaptive": ("O(c₀·D + Σᵢ nᵢ·dᵢ)", 1.0),
           "dsoftmax": ("O(Σⱼ nⱼ·dⱼ)", 1.0)}


def welch_p(a, b) -> float:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def fit_exponent(sizes, values) -> float:
    """The slope of log(value) against log(V): value ∝ V^slope."""
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    ok = (values > 0) & np.isfinite(values)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes[ok]), np.log(values[ok]), 1)[0])


def _cell(values, digits=3) -> str:
    from scipy import stats

    v = np.asarray(values, float)
    m = v.mean()
    if v.size < 2:
        return f"{m:.{digits}f}"
    s = v.std(ddof=1)
    half = float(stats.t.ppf(0.975, v.size - 1)) * s / math.sqrt(v.size)
    return f"{m:.{digits}f} ± {s:.{digits}f} [{m - half:.{digits}f}, {m + half:.{digits}f}]"


class Axis:
    """The grid's records arranged by vocabulary, budget and strategy."""

    def __init__(self, cfg: dict, records: list[dict]):
        self.cfg = cfg
        self.finals: dict[tuple[str, str, str], list[dict]] = {}
        for r in records:
            if r["kind"] == "final":
                self.finals.setdefault((r["vocab"], r["budget"], r["strategy"]), []).append(r)
        self.vocabs = [v for v in cfg["vocabularies"] if any(k[0] == v for k in self.finals)]
        self.budgets = list(dict.fromkeys(k[1] for k in self.finals))
        self.strategies = [s for s in cfg["strategies"] if any(k[2] == s for k in self.finals)]
        self.size = {v: self.finals[next(k for k in self.finals if k[0] == v)][0]["vocab_size"]
                     for v in self.vocabs}
        self.unigram = {v: self.finals[next(k for k in self.finals if k[0] == v)][0]["unigram"]
                        for v in self.vocabs}
        self.costs = {(r["vocab"], r["strategy"]): r for r in records if r["kind"] == "cost"}
        self.cost_size = {r["vocab"]: r["vocab_size"] for r in records if r["kind"] == "cost"}
        self.pairs_per_s = {(r["vocab"], r["strategy"]): r["pairs_per_s"] for r in records
                            if r["kind"] == "calibration" and "pairs_per_s" in r}
        self.unstable = {(r["vocab"], r["budget"], r["strategy"], r["learning_rate"]) for r in records
                         if r["kind"] == "diverged"}
        self.sweeps: dict[tuple[str, str, str], dict[float, float]] = {}
        for r in records:
            if r["kind"] == "sweep":
                self.sweeps.setdefault((r["vocab"], r["budget"], r["strategy"]), {})[r["learning_rate"]] = r["heldout"]

    def values(self, vocab, budget, strategy, key="heldout") -> list[float]:
        return [r[key] for r in self.finals.get((vocab, budget, strategy), [])]

    def mean(self, vocab, budget, strategy, key="heldout") -> float:
        v = self.values(vocab, budget, strategy, key)
        return float(np.mean(v)) if v else float("nan")

    def best(self, vocab, budget) -> tuple[str, list[str]]:
        """The strategy with the lowest held-out objective, and those not separable from it."""
        rows = {s: self.values(vocab, budget, s) for s in self.strategies if self.values(vocab, budget, s)}
        best = min(rows, key=lambda s: np.mean(rows[s]))
        return best, [s for s in rows if s != best and not welch_p(rows[best], rows[s]) < 0.05]

    def name(self, strategy) -> str:
        return self.cfg["strategies"][strategy]["name"]


def report(cfg: dict, records: list[dict]) -> list[str]:
    axis = Axis(cfg, records)
    if len(axis.vocabs) < 2:
        return []
    v_text = ", ".join(f"`{v}` {axis.size[v]:,}" for v in axis.vocabs)
    # A config without budgets has one, equal time (compare_losses.budgets).
    budgets = cfg.get("budgets") or {"time": {"seconds": cfg["budget_seconds"]}}
    lines = ["## Along the vocabulary axis", "",
             f"Vocabularies (words): {v_text}; the same corpus, splits and held-out protocol. "
             "Budgets: " + "; ".join(budget_text(name, b) for name, b in budgets.items()) + ".", ""]
    for budget in axis.budgets:
        lines += heldout_table(axis, budget)
    lines += cost_table(axis)
    lines += statements(axis)
    lines += ["![held-out objective vs V](heldout_vs_vocab.png)", "",
              "![gap to the full softmax vs V](gap_vs_vocab.png)", "",
              "![cost per pair vs V](cost_vs_vocab.png)", "",
              "![analogy accuracy vs V](analogy_vs_vocab.png)", ""]
    return lines


def budget_text(name: str, budget: dict) -> str:
    if "words" in budget:
        cap = budget.get("seconds_cap")
        return (f"**{name}** = equal words: {budget['words']:,} training words for every strategy"
                + (f" (or what fits {cap:.0f} s of steady-state training for one too slow for that; "
                   "the table says where)" if cap else ""))
    return f"**{name}** = equal time: the words each strategy trains in {budget['seconds']:.0f} s of steady-state training"


def heldout_table(axis: Axis, budget: str) -> list[str]:
    head = " | ".join(f"{v} ({axis.size[v]:,})" for v in axis.vocabs)
    lines = [f"### Held-out −log p by V, budget `{budget}`", "",
             "Mean ± std [95% t-interval] over the seeds; words trained (mean) below each cell; "
             "* marks an equal-words cell cut short by its time cap. Gap: minus the full softmax's "
             "mean at the same V, with Welch's p.", "",
             f"| strategy | {head} |", "|---|" + "---|" * len(axis.vocabs)]
    for s in axis.strategies:
        cells = []
        for v in axis.vocabs:
            vals = axis.values(v, budget, s)
            if not vals:
                cells.append("—")
                continue
            words = axis.mean(v, budget, s, "words")
            capped = any(r.get("capped") for r in axis.finals[(v, budget, s)])
            text = f"{_cell(vals)}<br>{words:,.0f} words{'*' if capped else ''}"
            full = axis.values(v, budget, "full")
            if full and s != "full":
                p = welch_p(vals, full)
                text += f"<br>gap {np.mean(vals) - np.mean(full):+.3f} (p {p:.2g})"
            cells.append(text)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| unigram (no context) | " + " | ".join(f"{axis.unigram[v]:.3f}" for v in axis.vocabs) + " |")
    lines.append("| uniform (ln V) | " + " | ".join(f"{math.log(axis.size[v]):.3f}" for v in axis.vocabs) + " |")
    lines += ["", "Analogy accuracy % (mean over the seeds): "]
    lines += ["", f"| strategy | {head} |", "|---|" + "---|" * len(axis.vocabs)]
    for s in axis.strategies:
        lines.append(f"| {s} | " + " | ".join(
            f"{100 * axis.mean(v, budget, s, 'analogy'):.2f}" if axis.values(v, budget, s) else "—"
            for v in axis.vocabs) + " |")
    lines.append("")
    return lines


def cost_sizes(axis: Axis) -> list[tuple[str, int]]:
    return sorted(axis.cost_size.items(), key=lambda kv: kv[1])


def cost_table(axis: Axis) -> list[str]:
    sizes = cost_sizes(axis)
    head = " | ".join(f"V={n:,}" for _, n in sizes)
    lines = ["### Cost per pair", "",
             "Flops and bytes accessed per training pair from XLA's cost analysis of one compiled "
             "step (`sgns_jax.engine.lowering.step_cost`: `compiled.cost_analysis()`, loops refused, "
             "a conditional's costliest branch counted — marked †), and seconds per pair measured "
             "on this CPU (steady-state calibration runs). Exponent: the slope of log cost "
             "against log V over the sizes costed (vocabularies without training runs are costed "
             "only). Bytes accessed count an in-place scatter into a table as the whole table, "
             "so every strategy's bytes grow with V (docs/roofline.md).", "",
             f"| strategy | claimed | kflops/pair: {head} | flops exp. | KB/pair: {head} | bytes exp. "
             f"| µs/pair: " + " | ".join(f"{v}" for v in axis.vocabs) + " | time exp. |",
             "|---|---|" + "---|" * len(sizes) + "---|" + "---|" * len(sizes) + "---|" + "---|" * len(axis.vocabs) + "---|"]
    for s in axis.strategies:
        costs = [axis.costs.get((v, s)) for v, _ in sizes]
        flops = [c["flops_per_pair"] if c else float("nan") for c in costs]
        bytes_ = [c["bytes_per_pair"] if c else float("nan") for c in costs]
        mark = "†" if any(c and c["conditional"] for c in costs) else ""
        us = [1e6 / axis.pairs_per_s[(v, s)] if (v, s) in axis.pairs_per_s else float("nan") for v in axis.vocabs]
        ns = [n for _, n in sizes]
        lines.append(
            f"| {s}{mark} | {CLAIMED.get(axis.name(s), ('?', 0))[0]} | "
            + " | ".join(f"{f / 1e3:,.1f}" for f in flops) + f" | {fit_exponent(ns, flops):.2f} | "
            + " | ".join(f"{b / 1e3:,.1f}" for b in bytes_) + f" | {fit_exponent(ns, bytes_):.2f} | "
            + " | ".join(f"{u:,.2f}" for u in us)
            + f" | {fit_exponent([axis.size[v] for v in axis.vocabs], us):.2f} |")
    lines.append("")
    return lines


def flips(axis: Axis, vocab: str) -> list[str]:
    """Pairs whose order is separated under both budgets and opposite between them."""
    if len(axis.budgets) < 2:
        return []
    a_budget, b_budget = axis.budgets[:2]
    out = []
    for s, t in combinations(axis.strategies, 2):
        a_s, a_t = axis.values(vocab, a_budget, s), axis.values(vocab, a_budget, t)
        b_s, b_t = axis.values(vocab, b_budget, s), axis.values(vocab, b_budget, t)
        if not (a_s and a_t and b_s and b_t):
            continue
        if welch_p(a_s, a_t) < 0.05 and welch_p(b_s, b_t) < 0.05:
            if (np.mean(a_s) < np.mean(a_t)) != (np.mean(b_s) < np.mean(b_t)):
                first, second = (s, t) if np.mean(a_s) < np.mean(a_t) else (t, s)
                out.append(f"{first} < {second} under `{a_budget}`, {second} < {first} under `{b_budget}`")
    return out


def statements(axis: Axis) -> list[str]:
    lines = ["### What changes with V (generated from the tables above)", ""]
    small, large = axis.vocabs[0], axis.vocabs[-1]
    for budget in axis.budgets:
        bests = []
        for v in axis.vocabs:
            best, ties = axis.best(v, budget)
            bests.append(f"`{v}`: **{best}** ({axis.mean(v, budget, best):.3f})"
                         + (f" ≈ {', '.join(ties)}" if ties else ""))
        lines.append(f"- Best held-out objective, budget `{budget}`: " + "; ".join(bests) + ".")
        gaps = []
        for s in axis.strategies:
            if s == "full":
                continue
            per_v = []
            for v in axis.vocabs:
                vals, full = axis.values(v, budget, s), axis.values(v, budget, "full")
                if vals and full:
                    sep = "" if welch_p(vals, full) < 0.05 else " (n.s.)"
                    per_v.append(f"{np.mean(vals) - np.mean(full):+.3f}{sep}")
            if per_v:
                gaps.append(f"{s} " + " → ".join(per_v))
        if gaps:
            lines.append(f"- Gap to the full softmax from `{small}` to `{large}`, budget `{budget}` "
                         "(negative: better than the exact softmax as trained in this budget; n.s.: "
                         "not separated): " + "; ".join(gaps) + ".")
        full_words = [f"`{v}` {axis.mean(v, budget, 'full', 'words'):,.0f} words"
                      + (" (cut by its cap)" if any(r.get("capped") for r in axis.finals.get((v, budget, "full"), [])) else "")
                      for v in axis.vocabs if axis.values(v, budget, "full")]
        if full_words:
            lines.append(f"- The full softmax trained, budget `{budget}`: " + ", ".join(full_words) + ".")
    for budget in axis.budgets:
        best = {(v, s): min(rates, key=rates.get) for (v, b, s), rates in axis.sweeps.items()
                if b == budget and len(rates) > 1}
        at_edge = {(v, s) for (v, s), lr in best.items()
                   if lr in (min(axis.sweeps[v, budget, s]), max(axis.sweeps[v, budget, s]))}
        # A best rate some seed diverged at is not used: the cells train below it, a rate bounded
        # by instability, not by the range swept.
        unstable = {(v, s) for v, s in at_edge if (v, budget, s, best[v, s]) in axis.unstable}
        edge = sorted({s for _, s in at_edge - unstable})
        if edge:
            lines.append(f"- Learning rates, budget `{budget}`: the sweep's best is at the edge of the "
                         f"range swept for {', '.join(edge)}, so their rates are not known to be "
                         "tuned (a wider sweep could change their cells).")
        if unstable:
            lines.append(f"- Learning rates, budget `{budget}`: the sweep's best, the top of the range, "
                         "diverged on another seed for " + ", ".join(f"{s} at `{v}`" for v, s in sorted(unstable))
                         + "; their cells train at the next rate down (bounded by instability).")
    for v in axis.vocabs:
        f = flips(axis, v)
        lines.append(f"- Rankings that flip between the budgets at `{v}`: "
                     + ("; ".join(f) if f else "none (no pair separated under both budgets in opposite orders)") + ".")
    sizes = cost_sizes(axis)
    ns = [n for _, n in sizes]
    exps = []
    for s in axis.strategies:
        flops = [axis.costs[(v, s)]["flops_per_pair"] for v, _ in sizes if (v, s) in axis.costs]
        if len(flops) == len(ns):
            exps.append(f"{s} {fit_exponent(ns, flops):.2f} (claimed {CLAIMED.get(axis.name(s), ('?',))[0]})")
    lines.append(f"- Flops per pair grow as V^k over V = {ns[0]:,}–{ns[-1]:,}: " + "; ".join(exps) + ".")
    lines += ["", *literature(axis), ""]
    return lines


def literature(axis: Axis) -> list[str]:
    small, large = axis.vocabs[0], axis.vocabs[-1]
    vmax = axis.size[large]
    out = ["### Against Chen et al. 2016 and Grave et al. 2017", ""]
    for budget in axis.budgets:
        ranks = []
        for v in axis.vocabs:
            if not axis.values(v, budget, "full"):
                continue
            best, ties = axis.best(v, budget)
            where = ("the best" if best == "full" else "not separable from the best" if "full" in ties
                     else f"behind {best} by {axis.mean(v, budget, 'full') - axis.mean(v, budget, best):.3f}")
            ranks.append(f"`{v}` {where}")
        hs = [f"{axis.mean(v, budget, 'hs') - min(axis.mean(v, budget, s) for s in axis.strategies if axis.values(v, budget, s)):+.3f}"
              for v in axis.vocabs if axis.values(v, budget, "hs")]
        changes = len({axis.best(v, budget)[0] for v in axis.vocabs}) > 1
        out.append(
            f"- **Chen, Grangier & Auli 2016** (budget `{budget}`). They report the full softmax "
            "competitive at 10k and 100k words and poor at 800k, hierarchical softmax holding up "
            "at large vocabularies, and the best strategy changing with V (language models, each "
            f"strategy tuned). Here the full softmax is {', '.join(ranks) or 'not trained'}; HS "
            f"trails the best by {' → '.join(hs) or 'n/a'} from `{small}` to `{large}`; the best "
            f"strategy {'changes' if changes else 'does not change'} with V. This corpus reaches "
            f"{vmax:,} words, so their 800k-word finding cannot be tested here.")
    for budget in axis.budgets:
        parts = []
        for v in axis.vocabs:
            a, f = axis.values(v, budget, "adaptive"), axis.values(v, budget, "full")
            ca, cf = axis.costs.get((v, "adaptive")), axis.costs.get((v, "full"))
            if not (a and f and ca and cf):
                continue
            p = welch_p(a, f)
            speed = ""
            if (v, "adaptive") in axis.pairs_per_s and (v, "full") in axis.pairs_per_s:
                speed = f", {axis.pairs_per_s[(v, 'full')] / axis.pairs_per_s[(v, 'adaptive')]:.2f}× the time per pair"
            parts.append(f"`{v}`: gap {np.mean(a) - np.mean(f):+.3f} nats (p {p:.2g}) at "
                         f"{ca['flops_per_pair'] / cf['flops_per_pair']:.2f}× the flops per pair{speed}")
        if parts:
            out.append(
                f"- **Grave et al. 2017** (*Efficient softmax approximation for GPUs*; budget "
                f"`{budget}`) state that adaptive softmax \"brings a large gain in efficiency over "
                "standard approximations while achieving an accuracy close to that of the full "
                "softmax\" (abstract; EuroParl, One Billion Word, GPUs). Here, adaptive against "
                "the full softmax: " + "; ".join(parts) + ".")
    return out


def plot(cfg: dict, records: list[dict], out_dir) -> None:
    """The four plots against V: held-out objective, gap to the full softmax, cost per pair
    (log-log), analogy accuracy; one panel per budget where a plot has budgets."""
    axis = Axis(cfg, records)
    if len(axis.vocabs) < 2:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [axis.size[v] for v in axis.vocabs]

    def per_budget(name, key, ylabel, gap=False, scale=1.0):
        fig, axes = plt.subplots(1, len(axis.budgets), figsize=(6 * len(axis.budgets), 4.2), squeeze=False)
        for ax, budget in zip(axes[0], axis.budgets):
            for s in axis.strategies:
                if gap and s == "full":
                    continue
                xs, ys, es = [], [], []
                for v, n in zip(axis.vocabs, sizes):
                    vals = np.asarray(axis.values(v, budget, s, key), float) * scale
                    if not vals.size:
                        continue
                    if gap:
                        full = np.asarray(axis.values(v, budget, "full", key), float)
                        if not full.size:
                            continue
                        vals = vals - full.mean()
                    xs.append(n)
                    ys.append(vals.mean())
                    es.append(vals.std(ddof=1) if vals.size > 1 else 0.0)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=s)
            if key == "heldout" and not gap:
                ax.plot(sizes, [axis.unigram[v] for v in axis.vocabs], "k--", label="unigram")
            if gap:
                ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("vocabulary size V (log scale)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"budget {budget}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)

    per_budget("heldout_vs_vocab.png", "heldout", "held-out −log p(c|w)")
    per_budget("gap_vs_vocab.png", "heldout", "held-out −log p minus the full softmax's", gap=True)
    per_budget("analogy_vs_vocab.png", "analogy", "analogy accuracy %", scale=100.0)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    cs = cost_sizes(axis)
    for s in axis.strategies:
        pts = [(n, axis.costs[(v, s)]["flops_per_pair"]) for v, n in cs if (v, s) in axis.costs]
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=f"{s} (k={fit_exponent(*zip(*pts)):.2f})")
        us = [(axis.size[v], 1e6 / axis.pairs_per_s[(v, s)]) for v in axis.vocabs if (v, s) in axis.pairs_per_s]
        if us:
            axes[1].plot(*zip(*us), marker="o", label=f"{s} (k={fit_exponent(*zip(*us)):.2f})")
    for ax, ylabel in zip(axes, ("flops per pair (XLA cost analysis)", "µs per pair (this CPU)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("vocabulary size V")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "cost_vs_vocab.png", dpi=90)
    plt.close(fig)
