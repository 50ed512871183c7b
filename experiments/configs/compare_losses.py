"""Every softmax strategy on the same corpus, vocabulary, batches and time budget.

Command (about 30 minutes on the 2-core CPU machine):

    python experiments/compare_losses.py --config experiments/configs/compare_losses.py \
        --out results/compare_losses

Quick check (under 2 minutes; what the test runs):

    python experiments/compare_losses.py --quick --out /tmp/compare_quick

Grid: strategy ∈ {full, hs, ns K=5, ns K=15, nce K=5, sampled S=64} × vocabulary ∈ {min_count 5
(16,459 words), the 5,000 most frequent} on the bundled Wikipedia text (1.34 M tokens, 5% of
the sentences held out). Every run: skip-gram, dim 100, window 5, sample 1e-3, SGD at the
word2vec learning rate 0.025 decayed linearly over one epoch, batches of 256 pairs (inside every
strategy's stable range), at most one epoch or `budget_seconds` of training, whichever comes
first — full softmax at 16k words is ~100 µs per pair on this CPU, so it sees only part of the
epoch in the budget. Expected result: see the README's "Comparing the strategies" section.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "corpus": None,                 # None: the bundled wiki.txt.gz
        "max_tokens": None,             # use only the first N tokens' sentences
        "heldout_fraction": 0.05,
        "heldout_pairs": 20000,
        "vocabularies": {
            "mc5": {"min_count": 5},
            "top5k": {"min_count": 5, "max_vocab": 5000},
        },
        "strategies": {
            "full": {"name": "full"},
            "hs": {"name": "hs"},
            "ns5": {"name": "ns", "negative": 5, "negative_mode": "pair"},
            "ns15": {"name": "ns", "negative": 15, "negative_mode": "pair"},
            "nce": {"name": "nce", "negative": 5},
            "sampled": {"name": "sampled", "shared_samples": 64},
        },
        "seeds": [0, 1, 2],
        "epochs": 1,
        "budget_seconds": 150.0,
        "eval_points": 5,               # held-out + analogy evaluations during each run
        "dim": 100, "window": 5, "sample": 1e-3,
        "learning_rate": 0.025, "batch_size": 256, "steps_per_chunk": 16,
    }
    if quick:
        config.update({
            "max_tokens": 150_000,
            "vocabularies": {"top2k": {"min_count": 3, "max_vocab": 2000}},
            "heldout_pairs": 3000, "budget_seconds": 4.0, "eval_points": 2, "dim": 32, "seeds": [0],
        })
    return config
