"""Checks run in a subprocess with 8 simulated CPU devices (see test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice_checks.py CHECK
prints one JSON line with the check's measurements.
"""

import json
import os
import re
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.data.batches import epoch_chunks
from sgns_jax.data.corpus import encode_corpus
from sgns_jax.train.config import TrainConfig
from sgns_jax.train.loop import batch_spec, build_layer, make_schedule, make_transform, train
from sgns_jax.train.parallel import data_mesh, fetch, replicate, shard_chunk
from sgns_jax.train.step import init_params, init_state, make_train_chunk


def tiny_corpus(directory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    p = np.arange(1, 41, dtype=float) ** -1.0
    lines = [" ".join(rng.choice(words, size=rng.integers(5, 30), p=p / p.sum())) for _ in range(200)]
    path = os.path.join(directory, "tiny.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def config(path, **sections):
    cfg = TrainConfig().replace(
        data={"corpus": path, "min_count": 1, "cache_dir": "", "sample": 1e-2},
        model={"dim": 8}, optim={"batch_size": 64, "steps_per_chunk": 2},
        run={"epochs": 2, "quiet": True})
    return cfg.replace(**sections) if sections else cfg


def one_step(path):
    """One chunk (2 SGD steps) on 1, 2, 4, 8 devices; max |difference| to the 1-device run."""
    out = {}
    for loss, mode in [("ns", "pair"), ("ns", "window"), ("ns", "batch"), ("hs", "pair"),
                       ("full", "pair"), ("nce", "pair"), ("sampled", "pair")]:
        for update in ("sparse", "dense"):
            cfg = config(path, loss={"name": loss, "negative_mode": mode}, optim={"update": update})
            corpus = encode_corpus(path, min_count=1)
            layer = build_layer(cfg, corpus.vocab.counts)
            spec = batch_spec(cfg, layer)
            chunk = next(iter(epoch_chunks(corpus, spec, 0))).arrays
            transform, stateless = make_transform("sgd")
            sched = make_schedule(cfg, len(corpus))
            params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
            # Nonzero output vectors so every gradient path is exercised.
            params["w_out"] = params["w_out"] + 0.1 * jax.random.normal(jax.random.key(5), params["w_out"].shape)
            key = jax.random.key_data(jax.random.key(1))
            results = {}
            for n in (1, 2, 4, 8):
                mesh = data_mesh(n) if n > 1 else None
                fn = make_train_chunk(layer, transform, sched, path=update, stateless=stateless, mesh=mesh)
                fresh = jax.tree.map(jnp.copy, params)  # the chunk donates its state
                state = replicate(init_state(fresh, transform, update), mesh)
                state, loss_sum, count = fn(state, shard_chunk(chunk, mesh), replicate(key, mesh))
                results[n] = ({k: fetch(v) for k, v in state.params.items()}, float(fetch(loss_sum)))
            diffs = {n: max(float(np.abs(results[n][0][k] - results[1][0][k]).max()) for k in ("w_in", "w_out"))
                     for n in (2, 4, 8)}
            moved = float(np.abs(results[1][0]["w_in"] - np.asarray(params["w_in"])).max())
            out[f"{loss}-{mode}-{update}"] = {"max_diff": max(diffs.values()), "moved": moved,
                                              "loss_diff": max(abs(results[n][1] - results[1][1]) for n in (2, 4, 8))}
    return out


def loss_curve(path):
    """Per-epoch mean loss of a short run on 1 and 4 devices."""
    curves = {}
    for n in (1, 4):
        r = train(config(path, run={"epochs": 4, "quiet": True, "devices": n}))
        curves[n] = r.epoch_losses
    return curves


def hlo(path):
    """Count all-reduces whose operand is a whole [V, D] table in the compiled sparse step."""
    out = {}
    for loss, update in [("ns", "sparse"), ("hs", "sparse"), ("ns", "dense")]:
        cfg = config(path, loss={"name": loss}, optim={"update": update})
        corpus = encode_corpus(path, min_count=1)
        layer = build_layer(cfg, corpus.vocab.counts)
        chunk = next(iter(epoch_chunks(corpus, batch_spec(cfg, layer), 0))).arrays
        transform, stateless = make_transform("sgd")
        mesh = data_mesh(8)
        fn = make_train_chunk(layer, transform, make_schedule(cfg, len(corpus)), path=update,
                              stateless=stateless, mesh=mesh)
        params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
        state = replicate(init_state(params, transform, update), mesh)
        text = fn.lower(state, shard_chunk(chunk, mesh),
                        replicate(jax.random.key_data(jax.random.key(1)), mesh)).compile().as_text()
        shapes = {f"f32[{params[k].shape[0]},8]" for k in params}
        reduces = [l for l in text.splitlines() if "all-reduce" in l]
        out[f"{loss}-{update}"] = {"table_all_reduces": sum(any(s in l for s in shapes) for l in reduces),
                                   "all_gathers": sum("all-gather" in l for l in text.splitlines())}
    return out


def distributed(path, process_id, port, out):
    """One of two processes (2 CPU devices each) of a jax.distributed run."""
    cfg = config(path, run={"epochs": 2, "quiet": True, "coordinator": f"127.0.0.1:{port}",
                            "num_processes": 2, "process_id": process_id, "out": out})
    r = train(cfg)
    return {"devices": jax.device_count(), "processes": jax.process_count(), "loss": r.mean_loss}


def single_process_4(path, out):
    r = train(config(path, run={"epochs": 2, "quiet": True, "devices": 4, "out": out}))
    return {"devices": jax.device_count(), "loss": r.mean_loss}


def vocab_sharded(path):
    """One chunk with the tables' rows split over 2, 4, 8 devices vs the unsharded step."""
    from sgns_jax.train.parallel import pad_rows, shard_rows

    out = {}
    for loss, mode in [("ns", "pair"), ("ns", "window"), ("ns", "batch"), ("hs", "pair"),
                       ("nce", "pair"), ("sampled", "pair")]:
        cfg = config(path, loss={"name": loss, "negative_mode": mode})
        corpus = encode_corpus(path, min_count=1)
        layer = build_layer(cfg, corpus.vocab.counts)
        chunk = next(iter(epoch_chunks(corpus, batch_spec(cfg, layer), 0))).arrays
        transform, stateless = make_transform("sgd")
        sched = make_schedule(cfg, len(corpus))
        params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
        params["w_out"] = params["w_out"] + 0.1 * jax.random.normal(jax.random.key(5), params["w_out"].shape)
        key = jax.random.key_data(jax.random.key(1))
        fn = make_train_chunk(layer, transform, sched, stateless=stateless)
        ref, _, _ = fn(init_state(jax.tree.map(jnp.copy, params), transform, "sparse"), chunk, key)
        diffs = {}
        for n in (2, 4, 8):
            mesh = data_mesh(n)
            fn = make_train_chunk(layer, transform, sched, stateless=stateless, mesh=mesh,
                                  shard_vocab=True)
            padded = pad_rows(jax.tree.map(jnp.copy, params), n)
            state = init_state(shard_rows(padded, mesh), transform, "sparse")
            state, _, _ = fn(state, chunk, key)
            per_device = {k: v.addressable_shards[0].data.shape[0] for k, v in state.params.items()}
            diffs[n] = max(float(np.abs(np.asarray(state.params[k])[:ref.params[k].shape[0]]
                                        - np.asarray(ref.params[k])).max()) for k in ref.params)
            assert all(per_device[k] * n == padded[k].shape[0] for k in per_device)
        out[f"{loss}-{mode}"] = {"max_diff": max(diffs.values()),
                                 "moved": float(np.abs(np.asarray(ref.params["w_in"]) - np.asarray(params["w_in"])).max())}
    return out


def vocab_sharded_training(path):
    """A short run with rows split over 4 devices vs the same run on one device."""
    a = train(config(path, loss={"name": "ns", "negative_mode": "pair"}, run={"epochs": 2, "quiet": True, "devices": 1}))
    b = train(config(path, loss={"name": "ns", "negative_mode": "pair"},
                     run={"epochs": 2, "quiet": True, "devices": 4, "shard_vocab": True}))
    return {"max_diff": max(float(np.abs(a.params[k] - b.params[k]).max()) for k in a.params),
            "shapes_equal": all(a.params[k].shape == b.params[k].shape for k in a.params),
            "losses": [a.epoch_losses, b.epoch_losses]}


def workers(path):
    """Worker streams: one round against its definition, base + Σ_w (worker_w − base); and
    whole runs with 2 workers (repeatability, loss next to the one-stream run)."""
    from sgns_jax.train.workers import WorkerStreams

    cfg = config(path, loss={"name": "ns", "negative_mode": "pair"})
    corpus = encode_corpus(path, min_count=1)
    layer = build_layer(cfg, corpus.vocab.counts)
    spec = batch_spec(cfg, layer)
    chunks = [c.arrays for c in epoch_chunks(corpus, spec, 0)][:3]
    transform, _ = make_transform("sgd")
    fn = make_train_chunk(layer, transform, make_schedule(cfg, len(corpus)))
    params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
    params["w_out"] = params["w_out"] + 0.1
    key = jax.random.key_data(jax.random.key(1))
    t = spec.steps_per_chunk

    def fresh(step=0):
        return init_state(jax.tree.map(jnp.copy, params), transform, "sparse")._replace(
            step=jnp.int32(step))

    def run(state, group):
        for arrays in group:
            state, _, _ = fn(state, arrays, key)
        return state

    out = {}
    for r in (1, 2):  # chunks per worker; worker 0 gets r chunks, worker 1 the rest (1)
        group = chunks[:r + 1]
        streams = WorkerStreams(fn, jax.devices()[:2], key, t, r)
        merged, _, _ = streams.round(streams.place(fresh()), group)
        parts = [run(fresh(), group[:r]), run(fresh(r * t), group[r:])]
        expected = {k: params[k] + sum(np.asarray(p.params[k]) - params[k] for p in parts)
                    for k in params}
        out[f"round_diff_r{r}"] = max(float(np.abs(np.asarray(merged.params[k]) - expected[k]).max())
                                      for k in params)
        out[f"round_step_r{r}"] = int(merged.step)
        out[f"moved_r{r}"] = min(float(np.abs(np.asarray(p.params["w_in"]) - params["w_in"]).max())
                                 for p in parts)
    runs = [train(config(path, loss={"name": "ns", "negative_mode": "pair"},
                         run={"epochs": 2, "quiet": True, "workers": w})) for w in (2, 2, 1)]
    out["repeat_diff"] = max(float(np.abs(runs[0].params[k] - runs[1].params[k]).max())
                             for k in runs[0].params)
    out["workers_vs_one"] = max(float(np.abs(runs[0].params[k] - runs[2].params[k]).max())
                                for k in runs[0].params)
    out["losses"] = [runs[0].epoch_losses, runs[2].epoch_losses]
    out["examples"] = [runs[0].examples, runs[2].examples]

    # Interrupted after the second round (SIGINT from the callback), resumed: same vectors.
    import signal

    from sgns_jax.train.loop import TrainingInterrupted

    rounds = [0]

    def interrupt(event):
        rounds[0] += 1
        if rounds[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with tempfile.TemporaryDirectory() as ckpt:
        def cfg(**run):
            return config(path, loss={"name": "ns", "negative_mode": "pair"},
                          run={"epochs": 2, "quiet": True, "workers": 2, "checkpoint_dir": ckpt, **run})
        try:
            train(cfg(), callback=interrupt)
            out["interrupted"] = False
        except TrainingInterrupted:
            out["interrupted"] = True
        resumed = train(cfg(resume=True))
    out["resume_diff"] = max(float(np.abs(resumed.params[k] - runs[0].params[k]).max())
                             for k in resumed.params)
    return out


if __name__ == "__main__":
    check = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        path = sys.argv[2] if len(sys.argv) > 2 and os.path.exists(sys.argv[2]) else tiny_corpus(d)
        if check == "distributed":
            result = distributed(path, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        elif check == "single4":
            result = single_process_4(path, sys.argv[3])
        else:
            result = {"one_step": one_step, "loss_curve": loss_curve, "hlo": hlo,
                      "vocab_sharded": vocab_sharded,
                      "vocab_sharded_training": vocab_sharded_training,
                      "workers": workers}[check](path)
    print("RESULT " + json.dumps(result))
