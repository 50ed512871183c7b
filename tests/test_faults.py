"""Faults a careful user can hit: full disks, kills at each write step, corrupted caches,
interrupts, resumes of the wrong checkpoint, mistyped configs, bad vectors files.

Each test checks the exit status (or the error type), that the error is one line without a
traceback, and that the files left behind are the complete old set or the complete new one.
The numbers in the section titles are those of issue 25. In-process runs go through
``sgns_jax.cli.main`` where the CLI's one-line output matters; the kill -9 matrix and the
repeated Ctrl-C run as subprocesses in the slow tier.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from sgns_jax import cli, io_utils
from sgns_jax.data import corpus as corpus_mod
from sgns_jax.data.corpus import CacheWarning, default_cache_dir, encode_corpus
from sgns_jax.errors import (CheckpointError, ConfigError, SgnsError, StorageError,
                             TrainingDiverged, VectorsFormatError)
from sgns_jax.evaluation.formats import DuplicateWordWarning, load_word2vec, save_word2vec
from sgns_jax.train import build as build_mod
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import TrainingInterrupted, train
from sgns_jax.train.memory import batch_bytes
from test_train import corpus_file, tiny_config  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "fault_harness.py"


# tiny_config's run as flags (the CLI's config is then the same).
TRAIN_FLAGS = ["--min-count", "1", "--cache-dir", "", "--sample", "1e-2", "--dim", "8",
               "--batch-size", "32", "--steps-per-chunk", "4", "--epochs", "2", "--quiet",
               "--workers", "1"]


def run_main(capsys, monkeypatch, *args) -> tuple[int, list[str]]:
    """``sgns-jax ARGS`` in this process: (exit status, non-empty stderr lines)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it
    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, [line for line in err.splitlines() if line.strip()]


def assert_one_line_error(rc, lines, status, pattern):
    assert rc == status, lines
    assert len(lines) == 1 and lines[0].startswith("sgns-jax"), lines
    assert re.search(pattern, lines[0]), lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory``, hidden ones included (a temp file left over is a finding)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def check_set(directory: Path, old: dict, new: dict) -> str:
    """The set in ``directory`` as a reader sees it (after finishing an interrupted write):
    'old' or 'new', each file byte for byte one of that set, no temp file but the dead
    writer's leftovers, which the next write removes."""
    out = directory / "v.txt"
    try:
        load_word2vec(out)
    except VectorsFormatError as e:
        raise AssertionError(f"the vectors are refused: {e}") from None
    files = {k: v for k, v in snapshot(directory).items() if not k.startswith(".")}
    assert files in (old, new), sorted(files)
    return "old" if files == old else "new"


# -- 1. the output set ------------------------------------------------------------------------
# The sets are written with a relative --out, "v.txt", from inside their folder: the config
# they record is then the same in every folder, and so are their bytes.
NEW_FLAGS = ["--dim", "12", "--seed", "7", "--epochs", "1", "--out", "v.txt"]


def new_run(corpus_file):
    return tiny_config(corpus_file, model={"dim": 12}, run={"seed": 7, "epochs": 1, "out": "v.txt"})


@pytest.fixture(scope="module")
def two_sets(corpus_file, tmp_path_factory):
    """The files of a dim-8 seed-0 run and of a dim-12 seed-7 run into the same --out."""
    sets = {}
    cwd = os.getcwd()
    try:
        for name, cfg in (("old", tiny_config(corpus_file, run={"epochs": 1, "out": "v.txt"})),
                          ("new", new_run(corpus_file))):
            os.chdir(tmp_path_factory.mktemp(name))
            train(cfg)
            sets[name] = snapshot(Path.cwd())
    finally:
        os.chdir(cwd)
    assert sorted(sets["old"]) == ["v.config.json", "v.manifest.json", "v.npz", "v.txt"]
    return sets


def put(directory: Path, files: dict, monkeypatch) -> None:
    """The files in ``directory``, which becomes the working directory."""
    directory.mkdir(exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    monkeypatch.chdir(directory)


@pytest.mark.parametrize("fails_at", [0, 1, 2, 3])
def test_a_failing_rename_leaves_a_set_readers_can_tell_apart(corpus_file, tmp_path, two_sets,
                                                                monkeypatch, fails_at):
    """Case 1: the k-th rename of the new set fails (k = 0: none done). Files already renamed
    are the new run's, the others the old run's; the vectors are read only if they are the
    ones the manifest in place records, so no file of one run passes for the other's."""
    put(tmp_path, two_sets["old"], monkeypatch)
    real_commit = io_utils.PendingFile.commit
    commits = []

    def commit(self):
        if self.path.parent.resolve() == tmp_path:
            if len(commits) == fails_at:
                raise OSError(errno.EIO, "Input/output error")
            commits.append(self.path.name)
        real_commit(self)

    monkeypatch.setattr(io_utils.PendingFile, "commit", commit)
    with pytest.raises(StorageError, match="Input/output error"):
        train(new_run(corpus_file))
    files = snapshot(tmp_path)
    assert not [n for n in files if n.startswith(".")]  # the temp files were removed
    for name, data in files.items():
        assert data == (two_sets["new"] if name in commits else two_sets["old"])[name]
    if fails_at == 0:
        assert files == two_sets["old"] and load_word2vec(tmp_path / "v.txt")[1].shape[1] == 8
    else:  # v.txt is new, the manifest in place the old one's: refused, with what to do
        with pytest.raises(VectorsFormatError, match="not the file its output set's manifest"):
            load_word2vec(tmp_path / "v.txt")


def test_full_disk_while_writing_the_outputs_keeps_the_old_set(corpus_file, tmp_path, two_sets,
                                                               monkeypatch, capsys):
    """Case 1/7: the disk fills while the new set is written (ENOSPC at an fsync, as delayed
    allocation reports it): one line, exit 1, the old set byte for byte, no temp file."""
    put(tmp_path, two_sets["old"], monkeypatch)
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / ".v.npz")):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc, lines = run_main(capsys, monkeypatch, "train", corpus_file, *TRAIN_FLAGS, *NEW_FLAGS)
    assert_one_line_error(rc, lines, 1, r"cannot write .*v\.npz: No space left on device \(the disk is full")
    assert snapshot(tmp_path) == two_sets["old"]


def test_out_naming_a_directory_or_the_corpus_fails_before_training(corpus_file, tmp_path,
                                                                    monkeypatch):
    """Case 7: --out a directory (it failed after the whole run, leaving an orphan .npz), an
    output that would overwrite the corpus, a metrics path that is a directory."""
    monkeypatch.setattr(build_mod, "build_run", lambda *a: pytest.fail("got past the checks"))
    (tmp_path / "d").mkdir()
    with pytest.raises(SgnsError, match="is a directory"):
        train(tiny_config(corpus_file, run={"out": str(tmp_path / "d")}))
    (tmp_path / "v.npz").mkdir()
    with pytest.raises(SgnsError, match="v.npz is a directory"):
        train(tiny_config(corpus_file, run={"out": str(tmp_path / "v.txt")}))
    with pytest.raises(SgnsError, match="is the corpus"):
        train(tiny_config(corpus_file, run={"out": str(corpus_file)}))
    with pytest.raises(SgnsError, match="metrics .* is a directory"):
        train(tiny_config(corpus_file, run={"metrics": str(tmp_path / "d")}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "v.npz"]


def test_a_new_format_replaces_the_whole_set(corpus_file, tmp_path, two_sets, monkeypatch):
    """--out v.bin after --out v.txt: the old run's v.txt goes with its set (a v.txt beside the
    new v.npz and config would pass for the new run's)."""
    put(tmp_path, two_sets["old"], monkeypatch)
    (tmp_path / "notes.txt").write_text("mine")
    train(new_run(corpus_file).replace(run={"out": "v.bin", "binary": True}))
    assert sorted(snapshot(tmp_path)) == ["notes.txt", "v.bin", "v.config.json", "v.manifest.json", "v.npz"]
    assert load_word2vec(tmp_path / "v.bin")[1].shape == (30, 12)


# -- 2, 3. checkpoints ------------------------------------------------------------------------
def test_a_fresh_run_refuses_a_used_checkpoint_dir(corpus_file, tmp_path, monkeypatch, capsys):
    """Case 2: the second fresh run would have replaced the first's checkpoint (epoch 2 went
    back to epoch 1). Refused before the corpus is read; --resume continues it."""
    ck = tmp_path / "ck"
    train(tiny_config(corpus_file, run={"checkpoint_dir": str(ck)}))
    before = (ck / "checkpoint.npz").read_bytes()
    rc, lines = run_main(capsys, monkeypatch, "train", corpus_file, *TRAIN_FLAGS,
                         "--checkpoint-dir", ck, "--max-words", "100")
    assert_one_line_error(rc, lines, 2, r"already holds a checkpoint: continue it with --resume")
    assert (ck / "checkpoint.npz").read_bytes() == before
    assert train(tiny_config(corpus_file, run={"checkpoint_dir": str(ck), "resume": True})).words > 0


def test_an_unwritable_checkpoint_dir_fails_before_training(corpus_file, tmp_path, monkeypatch):
    """Case 7: found at the first checkpoint before. (A path under a file: EACCES cannot be
    made for root, who runs some CI machines.)"""
    monkeypatch.setattr(build_mod, "build_run", lambda *a: pytest.fail("got past the checks"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create .*file/ck: Not a directory"):
        train(tiny_config(corpus_file, run={"checkpoint_dir": str(tmp_path / "file" / "ck")}))
    with pytest.raises(SgnsError, match="checkpoint directory .* is a file, not a directory"):
        train(tiny_config(corpus_file, run={"checkpoint_dir": str(tmp_path / "file")}))


def interrupt_at(chunk: int):
    """A train() callback that sends this process SIGINT after ``chunk`` chunks."""
    seen = []

    def callback(event):
        seen.append(event)
        if len(seen) == chunk:
            os.kill(os.getpid(), signal.SIGINT)

    return callback


@pytest.fixture(scope="module")
def checkpointed(corpus_file, tmp_path_factory):
    """A checkpoint written by Ctrl-C in the first of two epochs, and its run's config."""
    ck = tmp_path_factory.mktemp("ck")
    cfg = tiny_config(corpus_file, run={"checkpoint_dir": str(ck)})
    with pytest.raises(TrainingInterrupted, match="checkpoint saved"):
        train(cfg, callback=interrupt_at(3))
    return ck, cfg


def resume(ck, cfg, **sections):
    """Resume a copy of the checkpoint in ``ck`` (each test keeps the original intact)."""
    fresh = Path(tempfile.mkdtemp(dir=ck.parent)) / "ck"
    shutil.copytree(ck, fresh)
    return train(cfg.replace(run={"checkpoint_dir": str(fresh), "resume": True}).replace(**sections))


def test_resume_refuses_another_corpus_with_a_vocabulary_of_the_same_size(corpus_file,
                                                                           checkpointed, tmp_path):
    """Case 3: the same text with every word renamed trained on (rc 0) with rows meaning other
    words. The vocabulary's hash tells them apart; the same words in another order are told
    apart by the text's hash."""
    ck, cfg = checkpointed
    renamed = tmp_path / "renamed.txt"
    renamed.write_text(corpus_file.read_text().replace("w", "v"))
    with pytest.raises(CheckpointError, match="trained on another corpus: its vocabulary of 30 "
                                              "words differs from this corpus's 30"):
        resume(ck, cfg, data={"corpus": str(renamed)})
    lines = corpus_file.read_text().splitlines()
    reordered = tmp_path / "reordered.txt"
    reordered.write_text("\n".join(lines[:-2] + lines[-1:] + lines[-2:-1]) + "\n")
    assert encode_corpus(reordered, min_count=1).vocab == encode_corpus(corpus_file, min_count=1).vocab
    with pytest.raises(CheckpointError, match="another text with the same vocabulary"):
        resume(ck, cfg, data={"corpus": str(reordered)})


@pytest.mark.parametrize("section, changes, named", [
    ("model", {"dim": 16}, r"model.dim 8 \(this run: 16\)"),
    ("run", {"epochs": 3}, r"run.epochs 2 \(this run: 3\)"),
    ("run", {"seed": 1}, r"run.seed 0 \(this run: 1\)"),
    ("data", {"window": 3}, r"data.window 5 \(this run: 3\)"),
    ("loss", {"negative": 2}, r"loss.negative 5 \(this run: 2\)"),
    ("optim", {"learning_rate": 0.05}, r"optim.learning_rate 0.025 \(this run: 0.05\)"),
])
def test_resume_refuses_settings_that_shape_the_result(checkpointed, section, changes, named):
    ck, cfg = checkpointed
    with pytest.raises(CheckpointError, match="written with other settings: " + named):
        resume(ck, cfg, **{section: changes})


def test_resume_allows_what_does_not_change_the_result(corpus_file, checkpointed, tmp_path):
    """Where outputs go, the printing, the time budget and where the corpus lives (a copy of
    it: the content is what is checked) may change; the run ends where the uninterrupted one
    does, bit for bit."""
    ck, cfg = checkpointed
    copy = tmp_path / "copy.txt"
    shutil.copy(corpus_file, copy)
    resumed = resume(ck, cfg, data={"corpus": str(copy)},
                     run={"out": str(tmp_path / "v.txt"), "max_seconds": 1e6, "verbose": True,
                          "metrics": str(tmp_path / "m.jsonl"), "checkpoint_minutes": 5.0})
    whole = train(cfg.replace(run={"checkpoint_dir": None}))
    for name in whole.params:
        np.testing.assert_array_equal(resumed.params[name], whole.params[name])


def test_a_damaged_checkpoint_is_one_line(checkpointed, monkeypatch, capsys, corpus_file):
    """Case 7: a truncated checkpoint gave zipfile.BadZipFile; a flipped byte in its tables
    fails the zip's CRC."""
    ck, cfg = checkpointed
    for damage in ("truncate", "flip"):
        bad = Path(tempfile.mkdtemp(dir=ck.parent)) / "ck"
        shutil.copytree(ck, bad)
        path = bad / "checkpoint.npz"
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[:len(data) // 2]
        else:
            data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
        rc, lines = run_main(capsys, monkeypatch, "train", corpus_file, *TRAIN_FLAGS,
                             "--checkpoint-dir", bad, "--resume")
        assert_one_line_error(rc, lines, 2, r"checkpoint .* is damaged .*delete it to start afresh")


def test_row_files_of_a_split_table_are_read_by_range_and_checked(tmp_path):
    """A table split across processes is checkpointed as row files, one per device's rows
    (train/checkpoint.py): a slice reads only the files holding its rows; a file that is
    missing, damaged or of another save is refused with a CheckpointError, never mixed in."""
    from sgns_jax.errors import CheckpointError
    from sgns_jax.train.checkpoint import RowShards

    table = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    files = []
    for a, b in [(0, 14), (14, 28), (28, 40)]:
        name = f"checkpoint-w_in-{a}-{b}.500.npz"
        np.savez(tmp_path / name, rows=table[a:b], where=np.array([a, b, 500]))
        files.append([name, a, b])
    shards = RowShards(tmp_path, files, [40, 3], 500)
    np.testing.assert_array_equal(np.asarray(shards), table)
    np.testing.assert_array_equal(shards[10:20], table[10:20])
    (tmp_path / files[2][0]).unlink()
    np.testing.assert_array_equal(shards[0:28], table[:28])  # the missing file is not read
    with pytest.raises(CheckpointError, match="missing"):
        shards[27:30]
    np.savez(tmp_path / files[2][0], rows=table[28:], where=np.array([28, 40, 400]))  # an older save's
    with pytest.raises(CheckpointError, match="other rows"):
        shards[30:]
    (tmp_path / files[1][0]).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match="damaged"):
        shards[15:16]


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(corpus_file, tmp_path,
                                                                     monkeypatch):
    """Case 7: the epoch-2 checkpoint fails on a full disk; the epoch-1 one is intact and
    resumable."""
    ck = tmp_path / "ck"
    saves = []
    real = io_utils.PendingFile.finish

    def finish(self):
        if self.path.name == "checkpoint.npz":
            saves.append(1)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(self)

    monkeypatch.setattr(io_utils.PendingFile, "finish", finish)
    with pytest.raises(StorageError, match=r"checkpoint.npz: No space left on device"):
        train(tiny_config(corpus_file, run={"checkpoint_dir": str(ck)}))
    monkeypatch.setattr(io_utils.PendingFile, "finish", real)
    assert [p.name for p in ck.iterdir()] == ["checkpoint.npz"]
    resumed = train(tiny_config(corpus_file, run={"checkpoint_dir": str(ck), "resume": True}))
    assert 0 < resumed.resumed_words < resumed.words


# -- 4. the corpus cache ----------------------------------------------------------------------
@pytest.fixture
def cached(corpus_file, tmp_path):
    """An encoded corpus in a fresh cache: (cache dir, its entry, the corpus in memory)."""
    cache = tmp_path / "cache"
    encode_corpus(corpus_file, min_count=1, cache_dir=cache)
    (entry,) = cache.iterdir()
    return cache, entry, encode_corpus(corpus_file, min_count=1)


def same_corpus(a, b):
    return (a.vocab == b.vocab and np.array_equal(a.ids, b.ids)
            and np.array_equal(a.sentence_starts, b.sentence_starts) and a.raw_tokens == b.raw_tokens)


@pytest.mark.parametrize("damage", ["zero ids", "truncate ids", "garbage meta", "no vocab",
                                    "short vocab", "no meta"])
def test_a_damaged_cache_entry_is_rebuilt(corpus_file, cached, damage):
    """Case 4: zeroed ids trained silently on wrong data (loss 40.9 instead of 3.1); a
    truncated ids.npy failed every later run with 'mmap length is greater than file size';
    garbage meta.json, a missing or short vocab.txt gave tracebacks."""
    cache, entry, original = cached
    ids = entry / "ids.npy"
    if damage == "zero ids":
        data = bytearray(ids.read_bytes())
        data[200:600] = bytes(400)
        ids.write_bytes(bytes(data))
    elif damage == "truncate ids":
        ids.write_bytes(ids.read_bytes()[:300])
    elif damage == "garbage meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "no vocab":
        (entry / "vocab.txt").unlink()
    elif damage == "short vocab":
        (entry / "vocab.txt").write_text("\n".join((entry / "vocab.txt").read_text().splitlines()[:5]))
    else:
        (entry / "meta.json").unlink()
    with pytest.warns(CacheWarning, match=f"corpus cache entry {re.escape(str(entry))} is damaged .*rebuilding it"):
        rebuilt = encode_corpus(corpus_file, min_count=1, cache_dir=cache)
    assert same_corpus(rebuilt, original)
    assert [p.name for p in cache.iterdir()] == [entry.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same_corpus(encode_corpus(corpus_file, min_count=1, cache_dir=cache), original)


def test_a_killed_encoding_leaves_nothing_used_and_is_cleaned_up(corpus_file, tmp_path):
    """Case 4: a run killed while encoding leaves its work folder, unlocked; the next
    encoding removes it. A live one (locked) is left alone."""
    cache = tmp_path / "cache"
    dead = corpus_mod.WorkDir(cache, ".tmp-")
    (dead.path / "ids.npy").write_bytes(b"partial")
    os.close(dead.fd)  # the process died: its lock is released, its folder stays
    live = corpus_mod.WorkDir(cache, ".tmp-")
    encode_corpus(corpus_file, min_count=1, cache_dir=cache)
    names = sorted(p.name for p in cache.iterdir())
    assert not (dead.path.exists() or dead.lock.exists())
    assert live.path.name in names and live.lock.name in names and len(names) == 3
    live.remove()


def test_a_corpus_edited_in_place_is_not_served_from_the_old_entry(corpus_file, tmp_path):
    """Case 4: same size, mtime put back: the change of ctime still moves the key."""
    path = tmp_path / "c.txt"
    shutil.copy(corpus_file, path)
    cache = tmp_path / "cache"
    before = encode_corpus(path, min_count=1, cache_dir=cache)
    st = path.stat()
    text = path.read_text()
    edited = text.replace("w1 ", "w2 ", 1)
    assert edited != text and len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    after = encode_corpus(path, min_count=1, cache_dir=cache)
    assert after.vocab != before.vocab
    assert same_corpus(after, encode_corpus(path, min_count=1))


def test_an_unwritable_cache_is_skipped_with_a_warning(corpus_file, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.warns(CacheWarning, match="cannot write the corpus cache in .*Not a directory.*"
                                          "SGNS_JAX_CACHE"):
        corpus = encode_corpus(corpus_file, min_count=1, cache_dir=tmp_path / "file" / "cache")
    assert len(corpus) > 0


def test_full_disk_while_caching_is_one_line_and_leaves_no_entry(corpus_file, tmp_path,
                                                                 monkeypatch, capsys):
    """Case 7: a full disk while the cache entry is written (it was a traceback)."""
    cache = tmp_path / "cache"

    def copy(source, destination, *a, **k):  # the sentence starts copied behind their header
        raise OSError(errno.ENOSPC, "No space left on device", destination.name)

    monkeypatch.setenv("SGNS_JAX_CACHE", str(cache))
    monkeypatch.setattr(shutil, "copyfileobj", copy)
    rc, lines = run_main(capsys, monkeypatch, "vocab", corpus_file, "--min-count", "1")
    assert_one_line_error(rc, lines, 1, r"cannot write the encoded corpus to .*sentence_starts"
                                        r"\.npy: No space left on device")
    assert list(cache.iterdir()) == []


def test_no_home_says_what_to_set(monkeypatch):
    monkeypatch.delenv("SGNS_JAX_CACHE", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError())))
    with pytest.raises(ConfigError, match=r"HOME is not set\); set SGNS_JAX_CACHE"):
        default_cache_dir()
    monkeypatch.setenv("SGNS_JAX_CACHE", "/x/cache")
    assert default_cache_dir() == Path("/x/cache")


# -- 5. interrupts ----------------------------------------------------------------------------
def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "sgns-prefetch"]


@pytest.mark.parametrize("stop", ["interrupt", "diverge", "callback error", "ctrl-c in callback"])
def test_no_producer_thread_outlives_train(corpus_file, stop):
    """Case 5: a producer thread still running numpy when the interpreter exits aborts the
    process ('terminate called after throwing ...', rc 134). Whatever ends train(), its thread
    is joined first."""
    cfg = tiny_config(corpus_file, run={"epochs": 50})
    if stop == "diverge":
        cfg = cfg.replace(optim={"learning_rate": 1e30, "schedule": "constant"})

    def callback(event):
        if stop == "interrupt":
            os.kill(os.getpid(), signal.SIGINT)
        elif stop == "callback error":
            raise ValueError("from the callback")
        elif stop == "ctrl-c in callback":
            raise KeyboardInterrupt

    expected = {"interrupt": TrainingInterrupted, "diverge": TrainingDiverged,
                "callback error": ValueError, "ctrl-c in callback": KeyboardInterrupt}[stop]
    with pytest.raises(expected):
        train(cfg, callback=callback)
    assert prefetch_threads() == []


def run_cli(*args, fault="none", timeout=300, **kwargs):
    return subprocess.run([sys.executable, str(HARNESS), fault, "--", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def stderr_lines(r):
    return [line for line in r.stderr.splitlines() if line.strip()]


def test_a_ctrl_c_while_the_command_imports_stops_it_with_one_line(corpus_file, capsys):
    """The command's imports run inside interrupts.recorded() (a Ctrl-C there was a
    KeyboardInterrupt traceback from the middle of an import): main() then stops at once."""
    from sgns_jax import interrupts

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a pytest-xdist worker
    with interrupts.recorded():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
    assert signal.getsignal(signal.SIGINT) is before
    assert cli.main(["vocab", str(corpus_file), "--no-cache"]) == 130
    assert capsys.readouterr().err.strip() == "sgns-jax: interrupted"
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_repeated_ctrl_c_always_exits_130_with_a_loadable_checkpoint(tmp_path):
    """Case 5: 10 SIGINTs, 5 from start-up to early training and 5 during training (2 of 5
    runs aborted with rc 134 before; a Ctrl-C that Python dropped in JAX's garbage-collector
    callback let a run train on to its end; one during JAX's import or compilation crashed the
    interpreter at exit), and 2 diverging runs (1 in 10 aborted): exit 130 (2 for the
    divergence), one line, and a checkpoint left behind resumes. Two runs at a time."""
    from sgns_jax.evaluation.benchmarks import bundled

    # Optimised code (conftest.py turns it off for the tiny runs): these runs train the
    # bundled corpus for minutes' worth of words.
    env = {**os.environ, "SGNS_JAX_CACHE": str(tmp_path / "cache"), "JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}
    args = [sys.executable, str(HARNESS), "none", "--", "train", str(bundled("wiki.txt.gz")),
            "--epochs", "3", "--quiet", "--sample", "1e-4", "--checkpoint-minutes", "0.01"]

    def start(*extra):
        # SIGINT as a shell leaves it: a pytest-xdist worker ignores it, and its children would
        return subprocess.Popen([*args, *map(str, extra)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    warm = start("--max-words", "1", "--checkpoint-dir", tmp_path / "warm")
    assert warm.wait(timeout=300) == 0, warm.stderr.read()  # corpus cached, chunk compiled
    runs = []
    # In each pair, one run is interrupted at a fixed time from its start (imports, corpus,
    # compilation, or early training), the other a while after its first checkpoint (training,
    # whatever the machine's speed).
    for i, (early, late) in enumerate(zip(np.linspace(0.2, 4.0, 5), np.linspace(0.0, 1.5, 5))):
        started = time.monotonic()
        cks = [tmp_path / f"ck{i}-{j}" for j in range(2)]
        procs = [start("--checkpoint-dir", ck) for ck in cks]
        time.sleep(early)
        procs[0].send_signal(signal.SIGINT)
        while not (cks[1] / "checkpoint.npz").exists() and time.monotonic() < started + 120:
            time.sleep(0.05)
        time.sleep(late)
        procs[1].send_signal(signal.SIGINT)
        runs += [(when, p.wait(timeout=300), p.stderr.read(), ck)
                 for when, p, ck in zip((early, f"checkpoint + {late}"), procs, cks)]
    for pair in range(1):
        procs = [start("--alpha", "1e30", "--schedule", "constant") for _ in range(2)]
        runs += [("nan", p.wait(timeout=300), p.stderr.read(), None) for p in procs]
    for delay, rc, err, ck in runs:
        lines = [line for line in err.splitlines() if line.strip()]
        if rc == -signal.SIGINT and not lines and delay != "nan":
            continue  # stopped while Python itself started, before any handler: silent, rc 130
        assert rc == (2 if delay == "nan" else 130), (delay, rc, err)
        assert len(lines) == 1 and lines[0].startswith("sgns-jax: "), (delay, err)
    saved = [ck for *_, ck in runs if ck is not None and (ck / "checkpoint.npz").exists()]
    assert len(saved) >= 5
    resumed = start("--checkpoint-dir", saved[len(saved) // 2], "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()


# -- kill -9 and real full disks, in subprocesses ---------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [0, 1, 2, 3, 4])
def test_kill_at_each_write_step_leaves_one_set(corpus_file, tmp_path, two_sets, monkeypatch,
                                                kill_at):
    """Case 1: kill -9 when the k-th file of the new set is about to be renamed in (k = 0:
    all written, none renamed; k = 4: all renamed, the run ends). Before, a kill right after
    the .npz landed left it beside the old run's vectors and config. A reader finishes the
    interrupted set; the next write clears what the dead run left."""
    put(tmp_path, two_sets["old"], monkeypatch)
    r = run_cli("train", corpus_file, *TRAIN_FLAGS, *NEW_FLAGS, cwd=tmp_path,
                fault=f"kill-at-commit={kill_at}@{tmp_path}")
    assert r.returncode == (0 if kill_at == 4 else -signal.SIGKILL), r.stderr
    assert check_set(tmp_path, two_sets["old"], two_sets["new"]) == "new"
    train(new_run(corpus_file))
    assert snapshot(tmp_path) == two_sets["new"]


def test_kill_while_the_files_are_written_keeps_the_old_set(corpus_file, tmp_path, two_sets,
                                                            monkeypatch):
    """A kill before the manifest's temp file is complete: nothing can be finished; the old
    set stands, and the next write removes what the dead run left."""
    put(tmp_path, two_sets["old"], monkeypatch)
    (tmp_path / ".v.manifest.json.dead0000.tmp").write_bytes(b"")  # a writer killed early
    (tmp_path / ".v.txt.dead0000.tmp").write_bytes(b"3 12\nw0 1")
    assert check_set(tmp_path, two_sets["old"], two_sets["new"]) == "old"
    train(new_run(corpus_file))
    assert snapshot(tmp_path) == two_sets["new"]


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_and_keeps_the_old_set(corpus_file, tmp_path, two_sets,
                                                            monkeypatch):
    """Case 1/7 on a real file-size limit (EFBIG from write(), as a full disk's ENOSPC): the
    --dim 10 / --dim 20 --seed 7 reproduction left v.txt of one run and v.npz of the other."""
    put(tmp_path, two_sets["old"], monkeypatch)
    limit = 40_000  # above the encoded corpus's temp files, below the dim-400 vectors (~150 kB)
    r = run_cli("train", corpus_file, *TRAIN_FLAGS, "--dim", "400", "--out", "v.txt", cwd=tmp_path,
                fault=f"file-size-limit={limit}")
    lines = stderr_lines(r)
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert re.match(r"sgns-jax: error: cannot write .*v\.(txt|npz): File too large", lines[0])
    assert snapshot(tmp_path) == two_sets["old"]


@pytest.mark.slow
def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`sgns-jax vocab CORPUS | head -1` ended in a BrokenPipeError traceback."""
    corpus = tmp_path / "many.txt"
    corpus.write_text(" ".join(f"word{i}" for i in range(20000)) + "\n")
    r = subprocess.run(f"{sys.executable} {HARNESS} none -- vocab {corpus} --min-count 1 "
                       "--no-cache --top 20000 | head -1", shell=True, capture_output=True,
                       text=True, timeout=300)
    assert r.stdout.count("\n") == 1 and r.stderr == ""


# -- 6. wide windows --------------------------------------------------------------------------
def test_wide_windows_are_refused_where_their_updates_pile_up(corpus_file):
    """Case 6: window 100 trained to loss 12.1 and 200 diverged with window-shared negatives;
    per-pair sampling and CBOW (one averaged update per window) are fine."""
    for loss in ({"negative_mode": "window"}, {"name": "hs", "hs_paths": "window"}):
        with pytest.raises(ConfigError, match=r"window 11 is too wide .* up to 22 contexts.*"
                                              r"--negative-mode pair"):
            train(tiny_config(corpus_file, data={"window": 11}, loss=loss, run={"epochs": 1}))
    for ok in ({"loss": {"negative_mode": "window"}, "data": {"window": 10}},
               {"loss": {"negative_mode": "pair"}, "data": {"window": 30}},
               {"model": {"cbow": True, "dim": 8}, "data": {"window": 30}}):
        assert np.isfinite(train(tiny_config(corpus_file, run={"epochs": 1}, **ok)).mean_loss)


def test_a_run_that_cannot_fit_in_memory_is_refused_before_training(corpus_file, monkeypatch,
                                                                    capsys):
    """Case 6: --window 10000 passed 8 GB of RSS at 0% progress (blocks of 2^17 tokens then)
    while the summary estimated 3.87 GB. The estimate counts what the window costs, and a run
    over the memory left is refused before its tables or batches exist."""
    from sgns_jax.data.batches import BatchSpec

    wide = BatchSpec(layout="pairs", batch_size=1024, steps_per_chunk=32, window=10000)
    assert batch_bytes(wide, 1) > 5 * 2**30 > 100 * batch_bytes(BatchSpec(window=5), 1)
    monkeypatch.setattr(build_mod, "init_state", lambda *a: pytest.fail("tables allocated"))
    monkeypatch.setattr(build_mod, "available_memory", lambda: 2**30)
    rc, lines = run_main(capsys, monkeypatch, "train", corpus_file, *TRAIN_FLAGS,
                         "--negative-mode", "pair", "--window", "10000")
    assert_one_line_error(rc, lines, 2, r"this run needs about \d+\.\d GB of memory .* and 1.0 GB "
                                        r"is available; the batches grow with the window")


# -- 8. config types --------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('[model]\ndim = "50"\n', r"model.dim must be an integer, got '50'"),
    ('[data]\nsample = "x"\n', r"data.sample must be a finite number, got 'x'"),
    ('[run]\nepochs = 1.5\n', r"run.epochs must be an integer, got 1.5"),
    ('[data]\nwindow = true\n', r"data.window must be an integer, got True"),
    ('[run]\nquiet = "no"\n', r"run.quiet must be true or false, got 'no'"),
    ('{"model": {"dim": null}}', r"model.dim must be an integer, got None"),
    ('{"optim": {"learning_rate": "0.1"}}', r"optim.learning_rate must be a finite number or none"),
    ('{"loss": {"negative": 2.0}}', r"loss.negative must be an integer, got 2.0"),
    ('[1, 2]', r"a config is a table of sections .*got list"),
])
def test_config_files_with_wrong_types_are_one_line(corpus_file, tmp_path, monkeypatch, capsys,
                                                    text, message):
    """Case 8: these gave TypeError tracebacks, and quiet = "no" was taken as true."""
    path = tmp_path / ("c.toml" if text.startswith("[") and "]\n" in text else "c.json")
    path.write_text(text)
    rc, lines = run_main(capsys, monkeypatch, "train", corpus_file, "--config", path)
    assert_one_line_error(rc, lines, 2, message)


def test_an_int_is_a_float_but_not_a_bool():
    assert TrainConfig.from_dict({"optim": {"learning_rate": 1}}).optim.learning_rate == 1
    with pytest.raises(ConfigError, match="must be a finite number"):
        TrainConfig.from_dict({"optim": {"learning_rate": True}})


# -- 9. bad vectors files ---------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ("3 4\na 1 2 3\nb 1 2 3\nc 1 2 3\n", r"line 2 has 3 values, the header says 4"),
    ("2 2\na 1 2\nb 1 nan\n", r"line 3 \(word 'b'\) has a value that is not a finite number \(nan\)"),
    ("2 2\na 1 inf\nb 1 2\n", r"line 2 \(word 'a'\) .*not a finite number \(inf\)"),
    ("0 100\n", r"the header says 0 words"),
    ("2 0\na\nb\n", r"the header says 2 words of dimension 0"),
    ("2 2\na 1 2\nb 1 2\nc 1 2\n", r"header says 2 words, found 3 \(line 4 is one too many\)"),
    ("2 2\na 1 2\n\nb x 2\n", r"line 4 has a value that is not a number"),
])
def test_malformed_vectors_files_are_refused_with_the_line(tmp_path, monkeypatch, capsys, body,
                                                           message):
    """Case 9: a header one dimension off was read as binary and scored 0/19544 with rc 0; a
    single nan zeroed the analogy score; a '0 100' header was accepted."""
    path = tmp_path / "v.txt"
    path.write_text(body)
    rc, lines = run_main(capsys, monkeypatch, "eval", path)
    assert_one_line_error(rc, lines, 2, message)


def test_binary_vectors_with_a_wrong_dimension_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "v.bin"
    save_word2vec(path, ["alpha", "beta", "gamma"], rng.normal(size=(3, 6)), binary=True)
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data.replace(b"3 6\n", b"3 5\n", 1))
    (tmp_path / "long.bin").write_bytes(data.replace(b"3 6\n", b"3 7\n", 1))
    for name in ("short.bin", "long.bin"):
        with pytest.raises(VectorsFormatError, match="dimension|truncated"):
            load_word2vec(tmp_path / name)
    bad = np.ones((2, 3), np.float32)
    bad[1, 2] = np.nan
    save_word2vec(tmp_path / "nan.bin", ["a", "b"], bad, binary=True)
    with pytest.raises(VectorsFormatError, match=r"entry 2 \(word 'b'\) .*not a finite number"):
        load_word2vec(tmp_path / "nan.bin")


def test_repeated_words_are_warned_about_with_their_lines(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("3 2\na 1 2\nb 3 4\na 5 6\n")
    with pytest.warns(DuplicateWordWarning, match=r"word 'a' at line 4 repeats line 2; the first"):
        words, vectors = load_word2vec(path)
    assert words == ["a", "b", "a"] and vectors[2].tolist() == [5, 6]
