"""``sgns-jax eval``, ``sgns-jax similar`` and ``sgns-jax download``."""

from __future__ import annotations

import argparse
import json

from sgns_jax.cli import positive_int


def register(sub, add_corpus_flags) -> None:
    p = sub.add_parser("eval", help="analogy and word-similarity benchmarks of a vectors file")
    p.add_argument("vectors", help="word2vec text or binary file")
    p.add_argument("--restrict-vocab", type=positive_int, default=30000,
                   help="analogies: only the most frequent N words (default 30000)")
    p.add_argument("--method", choices=["add", "mul"], default="add", help="3CosAdd or 3CosMul")
    p.add_argument("--limit", type=positive_int, help="load only the first N vectors")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("similar", help="nearest neighbours of words")
    p.add_argument("vectors")
    p.add_argument("words", nargs="+")
    p.add_argument("--topn", type=positive_int, default=10)
    p.add_argument("--limit", type=positive_int)
    p.set_defaults(func=run_similar)

    p = sub.add_parser("download", help="fetch a standard corpus into the cache")
    p.add_argument("name", choices=["text8"])
    p.add_argument("--cache-dir", help="default: $SGNS_JAX_CACHE or ~/.cache/sgns_jax")
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.set_defaults(func=run_download)


def run_eval(args: argparse.Namespace) -> None:
    from sgns_jax.evaluation.benchmarks import (bundled, evaluate_analogies, evaluate_word_pairs,
                                                format_table, SIMLEX, WORDSIM)
    from sgns_jax.evaluation.embeddings import Embeddings

    emb = Embeddings.load(args.vectors, limit=args.limit)
    results = {"analogy": evaluate_analogies(emb, restrict_vocab=args.restrict_vocab,
                                             method=args.method).to_dict(),
               "wordsim353": evaluate_word_pairs(emb, bundled(WORDSIM), restrict_vocab=None).to_dict(),
               "simlex999": evaluate_word_pairs(emb, bundled(SIMLEX), restrict_vocab=None).to_dict()}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results).replace("3CosAdd", "3CosMul" if args.method == "mul" else "3CosAdd"))


def run_similar(args: argparse.Namespace) -> None:
    from sgns_jax.errors import VocabularyError
    from sgns_jax.evaluation.embeddings import Embeddings

    emb = Embeddings.load(args.vectors, limit=args.limit)
    unknown = [w for w in args.words if w not in emb]
    if unknown:
        raise VocabularyError(f"not in the vocabulary of {args.vectors}: {', '.join(unknown)}")
    for word in args.words:
        neighbours = emb.most_similar(word, topn=args.topn)
        print(f"{word}: " + ", ".join(f"{w} ({s:.3f})" for w, s in neighbours))


def run_download(args: argparse.Namespace) -> None:
    from sgns_jax.evaluation.download import download_text8

    path = download_text8(args.cache_dir, url=args.url)
    print(path)
