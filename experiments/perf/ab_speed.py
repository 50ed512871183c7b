"""Training words/s of the working tree against another commit, run alternately on the same corpus.

    python experiments/perf/ab_speed.py --base REV [--reps 3] [--corpus FILE] -- [sgns-jax train flags]

e.g. ``python experiments/perf/ab_speed.py --base 581050d -- --negative-mode pair --epochs 3``.
The base commit is checked out in a temporary git worktree; each repetition trains once with
the base and once with the working tree (``python -m sgns_jax.cli train``, each its own process,
the corpus cache shared), so the machine's drift hits both alike. Reported: words/s per run,
the mean ratio working tree / base and a paired t-test on the log ratios.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RATE = re.compile(r"\(([\d,]+) corpus words/s\)")


def words_per_s(tree: Path, corpus: str, cache: str, out: str, flags: list[str]) -> float:
    cmd = [sys.executable, "-m", "sgns_jax.cli", "train", corpus, "--sample", "1e-4",
           "--cache-dir", cache, "--quiet", "--out", out, *flags]
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)  # cwd: that tree's package
    m = RATE.search(r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"{tree}: training failed:\n{(r.stdout + r.stderr)[-2000:]}")
    return float(m.group(1).replace(",", ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision to compare against")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--corpus")
    p.add_argument("flags", nargs="*", help="sgns-jax train flags (after --)")
    args = p.parse_args()
    if args.corpus is None:
        args.corpus = str(ROOT / "sgns_jax" / "resources" / "wiki.txt.gz")
    from scipy import stats

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            rates = {"base": [], "tree": []}
            for rep in range(args.reps):
                for side, tree in (("base", base), ("tree", ROOT)):
                    rate = words_per_s(tree, args.corpus, str(Path(tmp) / "cache"), str(Path(tmp) / f"{side}.txt"),
                                       args.flags)
                    rates[side].append(rate)
                    print(f"rep {rep} {side:<4} {rate:>12,.0f} words/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    logs = [math.log(t / b) for t, b in zip(rates["tree"], rates["base"])]
    p_value = stats.ttest_1samp(logs, 0.0).pvalue if len(logs) > 1 else math.nan
    print(f"working tree / {args.base}: {math.exp(statistics.mean(logs)):.3f}× "
          f"({math.exp(min(logs)):.3f}–{math.exp(max(logs)):.3f}; paired t on log ratio p {p_value:.3f}); "
          f"base {statistics.mean(rates['base']):,.0f}, tree {statistics.mean(rates['tree']):,.0f} words/s "
          f"(flags: {' '.join(args.flags) or 'defaults'})")


if __name__ == "__main__":
    main()
