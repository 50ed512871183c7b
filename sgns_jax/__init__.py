"""sgns_jax: word2vec in JAX, with every softmax strategy side by side.

Data flows one way: ``data`` (corpus → vocabulary → ids → batches) → ``losses`` (pure output
layers) → ``train`` (pure step, loop, checkpoints) → ``evaluation`` (formats, neighbours,
benchmarks).
"""

__version__ = "0.1.0"
