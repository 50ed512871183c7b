"""Corpus scale: scan, memory, cache and training speed from 10 M to 1 B tokens, beside gensim's
vocabulary scan of the same file, and a kill -9 + --resume inside the epoch.

    python experiments/perf/bench_corpus_scale.py --tokens 10M,100M,1B --out docs/bench_corpus_scale.json
    python experiments/perf/bench_corpus_scale.py --quick            # 2 M tokens: a minute or two

For each size, in a work folder kept between runs (``--work-dir``, default
``$TMPDIR/sgns_corpus_scale``; corpora are generated once):

1. **corpus**: seeded Zipf text (p(r) ∝ 1/(r + 2.7)^1.07 over ``--vocab`` types, the shape of
   English word counts; every type appears), lines of 1,000 tokens, one file, or ``--files N``
   files in a directory;
2. **scan**: ``encode_corpus`` into a fresh cache in its own process: seconds, tokens/s, peak RSS,
   the cache entry's bytes on disk;
3. **gensim scan**: gensim's ``build_vocab`` over the same file streamed (``LineSentence``; a
   directory through ``PathLineSentences``) in its own process: seconds, tokens/s, peak RSS;
4. **train**: ``sgns-jax train`` at its defaults for ``--train-words`` words of the epoch
   (``--max-words``), the corpus cached: peak RSS, and words/s in ten windows of the budget
   (flat or not), from the metrics file;
5. **resume**: the same run with one stream (``--workers 1``) and a checkpoint every few
   seconds, killed with SIGKILL halfway through its words, then ``--resume``d to the end; its
   vectors compared byte for byte with an uninterrupted one-stream run.

Time: ``--quick`` a minute or two; 10 M tokens a few minutes; 100 M about 20 minutes (generation
and both scans dominate); 1 B tokens over two hours on the 2-core machine (the text alone is
about 7 GB). Every measurement is written to ``--out`` as it is made.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_count(text: str) -> int:
    scale = {"K": 10**3, "M": 10**6, "B": 10**9}
    text = text.strip().upper()
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def make_corpus(path: Path, tokens: int, vocab: int, files: int, seed: int = 0) -> Path:
    """Generate once (a ``.done`` marker beside it says the corpus is complete)."""
    import numpy as np

    done = path.with_name(path.name + ".done")
    if done.exists():
        return path
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(vocab) + 2.7) ** 1.07
    cdf = np.cumsum(p / p.sum())
    names = np.array([f"w{i}" for i in range(vocab)], dtype=object)
    if files > 1:
        path.mkdir(parents=True, exist_ok=True)
    per_file = -(-tokens // files)
    written = 0
    for f in range(files):
        target = path / f"part-{f:04d}.txt" if files > 1 else path
        with open(target, "w") as out:
            n = min(per_file, tokens - written)
            for start in range(0, n, 1_000_000):
                m = min(1_000_000, n - start)
                ids = np.searchsorted(cdf, rng.random(m))
                if written == 0 and start == 0:
                    ids[:min(vocab, m)] = np.arange(min(vocab, m))  # every type appears
                ids = np.minimum(ids, vocab - 1)
                lines = ids[: m - m % 1000].reshape(-1, 1000) if m >= 1000 else ids.reshape(1, -1)
                out.write("\n".join(" ".join(names[row]) for row in lines) + "\n")
                if m % 1000 and m >= 1000:
                    out.write(" ".join(names[ids[m - m % 1000:]]) + "\n")
            written += n
    done.write_text("")
    return path


def in_child(code: str, timeout: float = 36_000) -> dict:
    """Run ``code`` (which prints ``RESULT {json}``) in a fresh Python; add its peak RSS."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    result = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
    return result


MEASURE = """
import json, time, resource
def vm_hwm_mb():
    # The kernel's high-water mark of this process's memory since its exec. Not ru_maxrss: Linux
    # carries a forked child's size from before its exec into it, so every child read at least
    # this benchmark's own RSS (186 MB after generating the 1 B corpus: the scan and gensim's
    # build_vocab then both read exactly that).
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0) / 1024
def _sample():
    # Every 50 ms: this process's RSS with its children's (the scan processes), and the largest
    # child's: a sampled peak (ru_maxrss would count a child's size before its exec).
    import os, threading
    global with_children, largest_child
    with_children = largest_child = 0.0
    def run():
        global with_children, largest_child
        while True:
            sizes = []
            for task in os.listdir("/proc/self/task"):
                try:
                    pids = open(f"/proc/self/task/{task}/children").read().split()
                except OSError:
                    continue
                for pid in pids:
                    try:
                        sizes.append(rss_mb(pid))
                    except OSError:
                        pass
            with_children = max(with_children, rss_mb("self") + sum(sizes))
            largest_child = max([largest_child, *sizes])
            time.sleep(0.05)
    threading.Thread(target=run, daemon=True).start()
_sample()
def done(**kw):
    kw["peak_rss_mb"] = vm_hwm_mb()
    kw["peak_with_children_mb_sampled"] = max(with_children, kw["peak_rss_mb"])
    kw["largest_child_rss_mb_sampled"] = largest_child
    print("RESULT " + json.dumps(kw))
"""


def scan(corpus: Path, cache: Path) -> dict:
    return in_child(MEASURE + f"""
from sgns_jax.cli import fewer_malloc_arenas
fewer_malloc_arenas()
import os
from pathlib import Path
from sgns_jax.data.corpus import encode_corpus
t = time.perf_counter()
c = encode_corpus({str(corpus)!r}, min_count=5, cache_dir={str(cache)!r})
s = time.perf_counter() - t
size = sum(f.stat().st_size for f in Path({str(cache)!r}).rglob("*") if f.is_file())
done(seconds=s, tokens=c.raw_tokens, tokens_per_s=c.raw_tokens / s, vocab=len(c.vocab), cache_bytes=size)
""")


def gensim_scan(corpus: Path) -> dict:
    reader = ("PathLineSentences" if corpus.is_dir() else "LineSentence")
    return in_child(MEASURE + f"""
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence, PathLineSentences
t = time.perf_counter()
m = Word2Vec(sg=1, vector_size=100, window=5, negative=5, min_count=5, workers=2)
m.build_vocab({reader}({str(corpus)!r}))
s = time.perf_counter() - t
done(seconds=s, tokens=m.corpus_total_words, tokens_per_s=m.corpus_total_words / s,
     vocab=len(m.wv), reader={reader!r})
""")


TRAIN = """
import json, sys, time, resource
from sgns_jax.cli import fewer_malloc_arenas
fewer_malloc_arenas()
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import train
corpus, cache, words, out, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
cfg = TrainConfig().replace(data={"corpus": corpus, "cache_dir": cache},
                            run={"epochs": 1, "max_words": words, "quiet": True, "out": out, **extra})
def progress(event):
    print(f"WORDS {event.words} {event.seconds}", flush=True)
r = train(cfg, callback=progress)
with open("/proc/self/status") as f:  # since this process's exec (see vm_hwm_mb)
    peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print("RESULT " + json.dumps({"words_per_s": r.words_per_second, "parallelism": r.config.run.parallelism,
                              "peak_rss_mb": peak}), flush=True)
"""


def train_child(corpus: Path, cache: Path, words: int, out: Path, **run) -> subprocess.Popen:
    """``train()`` at the library's defaults (the command line's) in a fresh process, printing
    ``WORDS n seconds`` after every chunk group and ``RESULT {...}`` at the end."""
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(corpus), str(cache), str(words), str(out),
                             json.dumps(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def finished(p: subprocess.Popen) -> tuple[list[tuple[int, float]], dict]:
    lines = p.stdout.read().splitlines()
    err = p.stderr.read()
    p.wait()
    if p.returncode != 0:
        raise RuntimeError(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
    points = [(int(l.split()[1]), float(l.split()[2])) for l in lines if l.startswith("WORDS ")]
    return points, json.loads([l for l in lines if l.startswith("RESULT ")][-1][7:])


def train(corpus: Path, cache: Path, words: int, work: Path) -> dict:
    points, result = finished(train_child(corpus, cache, words, work / "vec.txt"))
    windows = []
    for i in range(10):  # words/s in ten windows of the budget
        sel = [(w, s) for w, s in points if words * i / 10 <= w < words * (i + 1) / 10]
        if len(sel) >= 2 and sel[-1][1] > sel[0][1]:
            windows.append((sel[-1][0] - sel[0][0]) / (sel[-1][1] - sel[0][1]))
    return {**result, "words": words, "window_words_per_s": windows}


def resume(corpus: Path, cache: Path, words: int, work: Path) -> dict:
    import shutil

    one = {"parallelism": "single"}
    finished(train_child(corpus, cache, words, work / "straight.txt", **one))
    ckpt = work / "ckpt"
    shutil.rmtree(ckpt, ignore_errors=True)
    run = {**one, "checkpoint_dir": str(ckpt), "checkpoint_minutes": 0.05}
    p = train_child(corpus, cache, words, work / "resumed.txt", **run)
    killed_at = None
    for line in p.stdout:  # kill once half the words are trained and a checkpoint exists
        if line.startswith("WORDS ") and int(line.split()[1]) >= words / 2 and (ckpt / "checkpoint.npz").exists():
            os.kill(p.pid, signal.SIGKILL)
            killed_at = int(line.split()[1])
            break
    p.wait()
    finished(train_child(corpus, cache, words, work / "resumed.txt", **run, resume=True))
    same = (work / "straight.txt").read_bytes() == (work / "resumed.txt").read_bytes()
    return {"killed_at_words": killed_at, "killed": p.returncode == -signal.SIGKILL,
            "resumed_equals_uninterrupted": same, "words": words}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", default="10M,100M,1B")
    p.add_argument("--vocab", type=int, default=500_000, help="word types of the generated corpus")
    p.add_argument("--files", type=int, default=1, help="one file, or a directory of this many")
    p.add_argument("--train-words", default="20M", help="the training budget (--max-words)")
    p.add_argument("--steps", default="scan,gensim,train,resume")
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "sgns_corpus_scale"))
    p.add_argument("--quick", action="store_true", help="2 M tokens, 50k types, 1 M training words")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.vocab, args.train_words = "2M", 50_000, "1M"
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.tokens.split(","):
        tokens = parse_count(size)
        name = f"zipf-{size}-{args.vocab}" + (f"-{args.files}files" if args.files > 1 else ".txt")
        t = time.perf_counter()
        corpus = make_corpus(work / name, tokens, args.vocab, args.files)
        row = {"tokens": tokens, "vocab_types": args.vocab, "files": args.files,
               "corpus_bytes": sum(f.stat().st_size for f in ([corpus] if corpus.is_file() else corpus.iterdir())),
               "generate_s": time.perf_counter() - t}
        cache = work / f"cache-{name}"
        words = min(parse_count(args.train_words), tokens)
        steps = {"scan": lambda: scan(corpus, cache), "gensim": lambda: gensim_scan(corpus),
                 "train": lambda: train(corpus, cache, words, work),
                 "resume": lambda: resume(corpus, cache, min(words, 2_000_000), work)}
        if cache.exists():  # a scan is a first run
            import shutil
            shutil.rmtree(cache)
        for step in args.steps.split(","):
            print(f"{size}: {step} ...", flush=True)
            try:
                row[step] = steps[step]()
            except Exception as e:  # recorded; the other steps go on
                row[step] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{size}: {step}: {json.dumps(row[step])}", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps([*rows, row], indent=1))
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
