"""Where the memory goes: peak RSS by phase, side by side with gensim on the same run.

    python experiments/perf/bench_memory.py [--corpus FILE] [--epochs 5] [--workers 2] [--dim 100]
                                       [--out docs/bench_memory.json]

Default corpus: ``../shared/data/mid.txt.gz`` (5.5 M tokens; ``$SGNS_JAX_MID`` elsewhere), the
bundled corpus when that is missing. Each side runs in its own process. sgns_jax's phases:
``import`` (JAX, the package, the CPU backend with its worker devices), ``corpus scan``
(encoding into a fresh cache folder, as a first run does), ``setup`` (tables, compilation and
the first chunk, up to the first callback), one ``epoch N`` phase per epoch, and ``write``
(vectors, state and config). Each phase's peak is the kernel's high-water mark (``VmHWM``),
reset between phases through ``/proc/self/clear_refs``, so a short spike is not missed; the
process peak is the largest. Sampled every 20 ms beside it: the largest anonymous and
file-backed parts of the RSS (file-backed: mostly jaxlib's code, mapped from its library),
and the RSS with the process's children added (the corpus scan runs in processes of its own).
gensim: skip-gram NS, the same settings, ``workers`` threads, vectors saved as text; its peak
RSS, two ways:

* ``gensim`` — streaming the file, as users run it on real corpora (the baseline every memory
  figure is compared with): ``LineSentence`` where the file has lines of sentences,
  ``Text8Corpus`` where its first line is longer than 10,000 tokens (a text8-style one-line
  corpus such as ``mid.txt.gz``: ``LineSentence`` would read that whole line into memory);
* ``gensim-list`` — the corpus held in memory as a list of sentences (``list(LineSentence)``),
  a labelled second row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = dict(dim=100, window=5, negative=5, sample=1e-3, min_count=5)


def status(pid: str = "self") -> dict[str, float]:
    """``/proc/PID/status`` memory fields in MB (VmRSS, VmHWM, RssAnon, RssFile, …)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def rss_mb() -> tuple[float, float]:
    """(current, peak since the last reset) resident set size in MB."""
    fields = status()
    return fields["VmRSS"], fields["VmHWM"]


def children_rss_mb() -> float:
    """Resident size of this process's child processes (the corpus scan's), MB."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                total += status(pid).get("VmRSS", 0.0)
            except OSError:  # just exited
                pass
    return total


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class Phases:
    """Each phase's peak (``VmHWM``, exact) and, sampled every 20 ms, the largest anonymous and
    file-backed parts of the process's RSS and the largest RSS of the process with its
    children (the scan processes)."""

    def __init__(self):
        import threading

        self.rows: list[dict] = []
        self.t = time.perf_counter()
        self._sampled = {"anon_mb": 0.0, "file_mb": 0.0, "with_children_mb": 0.0}
        reset_peak()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            fields = status()
            sampled = {"anon_mb": fields["RssAnon"], "file_mb": fields["RssFile"] + fields["RssShmem"],
                       "with_children_mb": fields["VmRSS"] + children_rss_mb()}
            for k, v in sampled.items():
                self._sampled[k] = max(self._sampled[k], v)
            time.sleep(0.02)

    def end(self, name: str) -> None:
        current, peak = rss_mb()
        sampled = dict(self._sampled)
        self.rows.append({"phase": name, "peak_mb": peak, "after_mb": current,
                          "seconds": time.perf_counter() - self.t,
                          "sampled_peak_anon_mb": sampled["anon_mb"],
                          "sampled_peak_file_mb": sampled["file_mb"],
                          "peak_with_children_mb": max(peak, sampled["with_children_mb"])})
        self.t = time.perf_counter()
        self._sampled.update(anon_mb=0.0, file_mb=0.0, with_children_mb=0.0)
        reset_peak()


def child_sgns(args) -> dict:
    from sgns_jax.cli import fewer_malloc_arenas

    fewer_malloc_arenas()  # as the command line does, before JAX starts its threads
    phases = Phases()
    import jax

    if args.workers > 1:
        jax.config.update("jax_num_cpu_devices", args.workers)
    import jax.numpy as jnp

    from sgns_jax.data.corpus import encode_corpus
    from sgns_jax.config import TrainConfig
    from sgns_jax.train.loop import train, write_outputs

    jnp.ones(1).block_until_ready()
    phases.end("import")
    cache = tempfile.mkdtemp(prefix="cache-", dir=args.tmp)  # removed with the parent's folder
    corpus = encode_corpus(args.corpus, min_count=SETTINGS["min_count"], cache_dir=cache)
    phases.end("corpus scan")
    cfg = TrainConfig().replace(
        data={"corpus": args.corpus, "window": SETTINGS["window"], "sample": SETTINGS["sample"],
              "min_count": SETTINGS["min_count"]},
        model={"dim": args.dim}, loss={"negative": SETTINGS["negative"]},
        run={"epochs": args.epochs, "quiet": True,
             "parallelism": "workers" if args.workers > 1 else "single", "devices": args.workers,
             "out": os.path.join(args.tmp, "sgns.txt")})
    epoch = [-1]

    def callback(event) -> None:
        if event.epoch != epoch[0]:
            phases.end("setup" if epoch[0] < 0 else f"epoch {epoch[0] + 1}")
            epoch[0] = event.epoch

    result = train(cfg.replace(run={"out": None}), corpus, callback)
    phases.end(f"epoch {epoch[0] + 1}")
    write_outputs(dataclasses.replace(result, config=cfg))
    phases.end("write")
    return {"side": "sgns_jax", "phases": phases.rows, "vocab": len(corpus.vocab),
            "tokens": corpus.raw_tokens, "words_per_s": result.words_per_second,
            "peak_mb": max(r["peak_mb"] for r in phases.rows),
            "peak_with_children_mb": max(r["peak_with_children_mb"] for r in phases.rows)}


def one_line_corpus(path: str, tokens: int = 10_000) -> bool:
    """Whether the file's first line holds more than ``tokens`` tokens (text8-style)."""
    from gensim import utils

    with utils.open(path, "rb") as f:
        return len(f.read(1 << 20).split(b"\n", 1)[0].split()) > tokens


def child_gensim(args) -> dict:
    phases = Phases()
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence, Text8Corpus

    t = time.perf_counter()
    if args.child == "gensim-list":
        sentences, reader = list(LineSentence(args.corpus)), "a list of sentences in memory"
    elif one_line_corpus(args.corpus):
        sentences, reader = Text8Corpus(args.corpus), "Text8Corpus (streamed)"
    else:
        sentences, reader = LineSentence(args.corpus), "LineSentence (streamed)"
    model = Word2Vec(sentences, sg=1, vector_size=args.dim, window=SETTINGS["window"],
                     negative=SETTINGS["negative"], sample=SETTINGS["sample"],
                     min_count=SETTINGS["min_count"], epochs=args.epochs, workers=args.workers)
    train_s = time.perf_counter() - t
    model.wv.save_word2vec_format(os.path.join(args.tmp, "gensim.txt"))
    phases.end("all")
    return {"side": args.child, "reader": reader, "peak_mb": phases.rows[0]["peak_mb"],
            "sampled_peak_anon_mb": phases.rows[0]["sampled_peak_anon_mb"],
            "sampled_peak_file_mb": phases.rows[0]["sampled_peak_file_mb"], "vocab": len(model.wv),
            "words_per_s": model.corpus_total_words * args.epochs / train_s}


def default_corpus() -> str:
    mid = Path(os.environ.get("SGNS_JAX_MID", Path(__file__).resolve().parents[3] / "shared" / "data" / "mid.txt.gz"))
    if mid.exists():
        return str(mid)
    from sgns_jax.evaluation.benchmarks import bundled
    return str(bundled("wiki.txt.gz"))


def table(runs: list[dict]) -> str:
    sg = next(r for r in runs if r["side"] == "sgns_jax")
    others = [r for r in runs if r["side"].startswith("gensim")]
    lines = ["| phase | peak RSS MB | of it anonymous / file-backed (sampled) | with the scan processes | RSS after MB | seconds |",
             "|---|---|---|---|---|---|"]
    for p in sg["phases"]:
        split = (f"{p['sampled_peak_anon_mb']:,.0f} / {p['sampled_peak_file_mb']:,.0f}"
                 if "sampled_peak_anon_mb" in p else "")
        children = f"{p['peak_with_children_mb']:,.0f}" if "peak_with_children_mb" in p else ""
        lines.append(f"| {p['phase']} | {p['peak_mb']:,.0f} | {split} | {children} | {p['after_mb']:,.0f} | {p['seconds']:.1f} |")
    lines.append(f"| **sgns_jax peak** | **{sg['peak_mb']:,.0f}** | | {sg.get('peak_with_children_mb', sg['peak_mb']):,.0f} | | |")
    for gs in others:
        split = (f"{gs['sampled_peak_anon_mb']:,.0f} / {gs['sampled_peak_file_mb']:,.0f}"
                 if "sampled_peak_anon_mb" in gs else "")
        lines.append(f"| **{gs['side']} peak** ({gs['reader']}) | **{gs['peak_mb']:,.0f}** | {split} | | | |")
        lines.append(f"| sgns_jax / {gs['side']} | {sg['peak_mb'] / gs['peak_mb']:.2f}× | | | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dim", type=int, default=SETTINGS["dim"])
    p.add_argument("--sides", default="sgns_jax,gensim,gensim-list")
    p.add_argument("--out", help="write the measurements here as JSON")
    p.add_argument("--report", help="write the phase table here as Markdown")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.corpus = args.corpus or default_corpus()
    if args.child:
        print("RESULT " + json.dumps(child_sgns(args) if args.child == "sgns_jax" else child_gensim(args)))
        return
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides.split(","):
            cmd = [sys.executable, __file__, "--child", side, "--corpus", args.corpus, "--tmp", tmp,
                   "--epochs", str(args.epochs), "--workers", str(args.workers), "--dim", str(args.dim)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{side} failed:\n{r.stderr[-3000:]}")
            runs.append(json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:]))
    root = Path(__file__).resolve().parents[2]
    result = {"corpus": os.path.relpath(Path(args.corpus).resolve(), root), "epochs": args.epochs, "workers": args.workers, "dim": args.dim,
              "settings": SETTINGS, "runs": runs}
    print(f"{Path(args.corpus).name}, {args.epochs} epochs, {args.workers} workers, dim {args.dim}")
    print(table(runs))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.report:
        command = "python experiments/perf/bench_memory.py " + " ".join(sys.argv[1:])
        Path(args.report).write_text(
            f"# Peak memory by phase\n\nGenerated by `{command}` ({result['corpus']}, {args.epochs} "
            f"epochs, {args.workers} worker streams, dim {args.dim}, settings {SETTINGS}; the corpus "
            "scanned into a fresh cache, as a first run does). Peak: the kernel's high-water mark "
            "(VmHWM) per phase; gensim streams the file (the baseline) or holds it as a list.\n\n"
            + table(runs) + "\n")


if __name__ == "__main__":
    main()
