"""``make demo``: train on the bundled Wikipedia corpus, show neighbours and benchmark scores."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sgns_jax.evaluation.benchmarks import bundled, evaluate_all, format_table
from sgns_jax.evaluation.embeddings import Embeddings
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import train

WORDS = ("king", "war", "music", "france", "computer", "three")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "vectors.txt"
    # The defaults: worker streams over the CPU's cores, one stream on an accelerator.
    cfg = TrainConfig().replace(data={"corpus": str(bundled("wiki.txt.gz"))},
                                run={"out": str(out), "epochs": 5})
    result = train(cfg)
    print(f"\n{result.corpus_tokens:,} tokens × {cfg.run.epochs} epochs in {result.seconds:.1f} s "
          f"= {result.words_per_second:,.0f} words/s (whole run {result.total_seconds:.1f} s); "
          f"vectors in {out}\n")
    emb = Embeddings.load(out)
    for word in WORDS:
        print(f"{word:>9}: " + ", ".join(w for w, _ in emb.most_similar(word, topn=8)))
    print()
    print(format_table(evaluate_all(emb)))


if __name__ == "__main__":
    main()
