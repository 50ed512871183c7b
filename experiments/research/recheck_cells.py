"""Retrain recorded cells of a comparison grid with the code checked out now and say whether
their held-out objective comes out bit for bit the same.

A grid resumes: cells trained by an earlier commit are kept when nothing they depend on
changed (their words, their rate). This checks that claim on a sample of them (it found that
the vocabulary grid's cells kept from 56b465e did not reproduce, and the grid was retrained), e.g.
the bundled grid's seed-0 cells trained by 054b79e:

    python experiments/research/recheck_cells.py --config experiments/research/configs/compare_losses.py \
        --results docs/compare_losses/results.jsonl --commit 054b79e --seed 0

Exit status 1 if any cell differs. Training is deterministic given (config, seed): the words a
cell trains are its record's, not a time budget's, so the machine's load does not matter. Its
CPU does: XLA compiles for the host's instruction set, so on another CPU the same commit rounds
differently. On 2026-12-04 (AMD EPYC, AVX2) the vocabulary grid's top10k seed-0 words cells from
e28bf2d, trained on the previous session's machine, differed by 1e-7 nats (full, ns, sampled,
...) to 0.005 nats (adaptive, its seed std 0.008), the same as forcing the instruction set here
with XLA_FLAGS=--xla_cpu_max_isa=AVX does; rerun here, each cell is the same bit for bit.
"""

import argparse
import runpy
import sys

import numpy as np
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the grid's config (Python file with get_config)")
    p.add_argument("--results", required=True, help="the grid's results.jsonl")
    p.add_argument("--quick", action="store_true", help="the grid was run with --quick")
    p.add_argument("--commit", default="", help="only cells trained by this commit (a prefix)")
    p.add_argument("--vocab", action="append", help="only these vocabularies (repeatable)")
    p.add_argument("--seed", type=int, action="append", help="only these seeds (repeatable)")
    p.add_argument("--budget", action="append", help="only these budgets (repeatable)")
    p.add_argument("--strategy", action="append", help="only these strategies (repeatable)")
    args = p.parse_args(argv)
    cl = runpy.run_path(str(HERE / "compare_losses.py"))
    cfg = cl["load_config"](args.config, args.quick)
    records = cl["read_results"](Path(args.results))
    calibration = {(r["vocab"], r["strategy"]): r for r in records if r["kind"] == "calibration"}
    cells = [r for r in records if r["kind"] == "final"
             and r.get("commit", "").startswith(args.commit)
             and (not args.vocab or r["vocab"] in args.vocab) and (not args.seed or r["seed"] in args.seed)
             and (not args.budget or r["budget"] in args.budget)
             and (not args.strategy or r["strategy"] in args.strategy)]
    if not cells:
        sys.exit(f"{args.results}: no final records match")
    budgets = cl["budgets"](cfg)
    # Records from before ``budget_words`` was stored: the words their calibration gives (what
    # the grid compares them with to keep them).
    lacking = [r["cell"] for r in cells if "budget_words" not in r and (r["vocab"], r["strategy"]) not in calibration]
    if lacking:
        sys.exit(f"{args.results}: {lacking[0]} has no budget_words and no calibration to derive them from")
    data, differ = {}, 0
    for r in cells:
        if r["vocab"] not in data:
            data[r["vocab"]] = cl["prepare"](cfg, cfg["vocabularies"][r["vocab"]])
        strategy = cfg["strategies"][r["strategy"]]
        words = r.get("budget_words") or cl["budget_words"](
            cfg, budgets[r["budget"]], calibration[r["vocab"], r["strategy"]])[0]
        result = cl["train"](cl["train_config"](cfg, strategy, r["learning_rate"], r["seed"], max_words=words),
                             data[r["vocab"]]["train"])
        host = {k: np.asarray(v) for k, v in result.params.items()}
        heldout = cl["objectives"](strategy, data[r["vocab"]], "test")["heldout"](host)
        same = heldout == r["heldout"] and result.words == r["words"]
        differ += not same
        verdict = "same" if same else f"DIFFERENT ({heldout - r['heldout']:+.2g} nats)"
        print(f"{r['cell']} (lr {r['learning_rate']}, {r['commit']}): recorded {r['heldout']!r} nats after "
              f"{r['words']:,} words, now {heldout!r} after {result.words:,}: {verdict}",
              flush=True)
    print(f"{len(cells) - differ} of {len(cells)} cells the same bit for bit")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
