"""``make demo``: encode the bundled Wikipedia corpus and show its vocabulary and batches."""

from importlib import resources

from sgns_jax.data.batches import BatchSpec, epoch_chunks
from sgns_jax.data.corpus import default_cache_dir, encode_corpus


def main() -> None:
    path = resources.files("sgns_jax") / "resources" / "wiki.txt.gz"
    corpus = encode_corpus(path, min_count=5, cache_dir=default_cache_dir())
    print(f"{corpus.raw_tokens:,} tokens, vocabulary of {len(corpus.vocab):,} words")
    chunks = list(epoch_chunks(corpus, BatchSpec(), 0))
    print(f"one epoch: {len(chunks)} chunks of {chunks[0].arrays['input'].shape} pairs")


if __name__ == "__main__":
    main()
