"""``sgns-jax`` command line. A thin shell: parse flags, call the library, print results.

User errors (:class:`sgns_jax.errors.SgnsError`) are printed as one line and exit with status 2;
there is no traceback for them.
"""

from __future__ import annotations

from sgns_jax import interrupts

# A Ctrl-C while the command imports (numpy among them) is recorded, and main() stops on it
# with one line, instead of a KeyboardInterrupt traceback from the middle of an import.
with interrupts.recorded():
    import argparse
    import os
    import sys
    import warnings
    from pathlib import Path

    from sgns_jax.errors import SgnsError
    from sgns_jax.io_utils import storage_error


def _one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count of words, results or lines)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cmd_vocab(args: argparse.Namespace) -> None:
    from sgns_jax.data.corpus import default_cache_dir, encode_corpus

    corpus = encode_corpus(args.corpus, min_count=args.min_count, max_vocab=args.max_vocab,
                           max_final_vocab=args.max_final_vocab,
                           lowercase=args.lowercase,
                           cache_dir=None if args.no_cache else default_cache_dir())
    vocab = corpus.vocab
    print(f"{corpus.raw_tokens} tokens, {len(corpus)} in vocabulary, {len(vocab)} words, "
          f"{len(corpus.sentence_starts)} sentences")
    for w, c in zip(vocab.words[:args.top], vocab.counts[:args.top].tolist()):
        print(f"{w}\t{c}")
    if args.save_vocab:
        vocab.save(args.save_vocab)


def _add_corpus_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", help="text file (.gz/.bz2 too) or a directory of them")
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--max-vocab", type=int, default=None, help="keep exactly the N most frequent words")
    p.add_argument("--max-final-vocab", type=int, default=None,
                   help="gensim's: raise min-count until at most N words remain")
    p.add_argument("--lowercase", action="store_true")
    p.add_argument("--no-cache", action="store_true", help="do not cache the encoded corpus")


class _Parser(argparse.ArgumentParser):
    """Bad flags are one line too (argparse prints the usage first; --help has it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sgns-jax", description="word2vec in JAX: train, evaluate and compare word vectors.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("vocab", help="count a corpus, print its vocabulary, cache its ids")
    _add_corpus_flags(p)
    p.add_argument("--top", type=positive_int, default=10)
    p.add_argument("--save-vocab", type=Path, help="write word2vec's 'word count' file")
    p.set_defaults(func=_cmd_vocab)

    for register in _extra_commands():
        register(sub, _add_corpus_flags)
    return parser


def _extra_commands():
    """The subcommands of their own modules: train (``cli/train.py``), and eval, similar and
    download (``cli/evaluate.py``)."""
    from sgns_jax.cli import evaluate, train

    return [train.register, evaluate.register]


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (unless ``MALLOC_ARENA_MAX`` says otherwise). glibc gives each
    thread that allocates concurrently an arena of its own, up to 8 per core, and keeps what
    each frees; XLA's thread pool, the batch producer and the worker streams then held about
    90 MB more at the same live size (docs/bench_memory.md). Called before JAX starts its
    threads; a no-op off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    try:
        # The process's own symbols, libc's among them: ctypes.util.find_library would start
        # subprocesses (ldconfig, gcc), where a Ctrl-C at start-up was a traceback.
        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def main(argv: list[str] | None = None) -> int:
    fewer_malloc_arenas()
    _one_line_warnings()
    with interrupts.handled():  # a Ctrl-C that Python drops is still seen (sgns_jax/interrupts.py)
        try:
            # Building the parser imports the loss registry, and with it JAX: jaxlib's extension
            # module, interrupted while it initialises, crashed the interpreter at exit (SIGSEGV).
            # A Ctrl-C waits for the import, then stops the program.
            with interrupts.deferred():
                parser = build_parser()
            args = parser.parse_args(argv)
            args.func(args)
            interrupts.check()
        except SgnsError as e:
            print(f"sgns-jax: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("sgns-jax: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `sgns-jax vocab ... | head`: the reader left, nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except OSError as e:  # a file-system refusal not translated where it happened
            print(f"sgns-jax: error: {storage_error(e, e.filename or '?', 'use')}", file=sys.stderr)
            return 1
        except MemoryError as e:
            print(f"sgns-jax: error: out of memory ({e or 'an allocation failed'}); the run "
                  "summary estimates what a run needs", file=sys.stderr)
            return 1
    return 0
