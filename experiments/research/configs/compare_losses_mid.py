"""The strategy comparison at a scale where they differ: ``../shared/data/mid.txt.gz``.

Command (the 2-core CPU machine; the training time its records add up to is stated in
docs/compare_losses_mid/report.md):

    python experiments/research/compare_losses.py --config experiments/research/configs/compare_losses_mid.py \
        --out docs/compare_losses_mid

``mid.txt.gz`` (5.5 M tokens of mixed English, 40k words with count ≥ 5; provenance in
``../shared/data/README.md``) is for experiments only and is not bundled: set ``SGNS_JAX_MID``
to its path elsewhere. The vocabulary is capped at the 10,000 most frequent words of the
training split so that the exact full softmax stays the tractable reference on a CPU. Every
strategy trains 3 epochs or the words that fit ``budget_seconds`` of steady-state training (the
full softmax), at the best rate of a sweep on the validation split (three rates; four for ns5), over 3 seeds.
"""

import os
import runpy
from pathlib import Path

bundled_config = runpy.run_path(str(Path(__file__).with_name("compare_losses.py")))["get_config"]
MID = os.environ.get("SGNS_JAX_MID",
                     str(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mid.txt.gz"))


def get_config(quick: bool = False) -> dict:
    config = bundled_config(quick)
    if quick:
        return config
    config.update({
        "corpus": MID,
        "vocabularies": {"top10k": {"min_count": 5, "max_vocab": 10000}},
        "epochs": 3,
        "budget_seconds": 420.0,
        "calibration_seconds": 10.0,
        # Three epochs move most optima inside 0.0125–0.05; ns5 chose 0.05, the top, so its
        # sweep goes one step further.
        "learning_rates": [0.0125, 0.025, 0.05],
    })
    config["strategies"]["ns5"] = {**config["strategies"]["ns5"], "learning_rates": [0.0125, 0.025, 0.05, 0.1]}
    return config
