"""Checks run in a subprocess with 8 simulated CPU devices (see test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice_checks.py CHECK
prints one JSON line with the check's measurements. The runners (engine/runners.py) are built as
train() builds them, from a config.
"""

import json
import os
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.data.batches import epoch_chunks
from sgns_jax.data.corpus import encode_corpus
from sgns_jax.losses import registered_variants
from sgns_jax.train.build import batch_spec, build_layer, make_schedule
from sgns_jax.config import TrainConfig
from sgns_jax.train.loop import train
from sgns_jax.engine.mesh import fetch
from sgns_jax.engine.runners import RUNNERS, _whole_table_roles
from sgns_jax.engine.step import chunk_steps, init_params, init_state
from sgns_jax.engine.updates import make_update_rule


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
        run={"epochs": 2, "quiet": True, "parallelism": "single"})
    return cfg.replace(**sections) if sections else cfg


def variant_config(path, name, kw, **sections):
    """The config of a registered loss variant (its make_output_layer keyword arguments)."""
    loss = {"name": name, **{k: v for k, v in kw.items() if k != "cbow"}}
    return config(path, loss=loss, model={"dim": 8, "cbow": kw.get("cbow", False)}, **sections)


# Options that size a layer's leaves and blocks, not how a step's batch and noise split over
# devices: a variant differing from its strategy's first only in these takes the same data-
# parallel path (one device covers it: test_train's sparse = dense, test_lowering per variant).
SHAPE_OPTIONS = {"cutoffs", "softmax_block", "div_value"}
# Strategies whose dense step the multi-device checks run: row-indexed leaves (ns, hs), whole
# leaves (full) and a mix (adaptive). A dense step is the one-device gradient all-reduced,
# whatever the loss.
DENSE_STRATEGIES = ("ns", "hs", "full", "adaptive")


def variants():
    """(name, kw, first) for every registered variant; ``first``: its strategy's first."""
    seen = set()
    for name, kw in registered_variants():
        yield name, kw, name not in seen
        seen.add(name)


def sigint_after(chunks, send=True):
    """A train() callback that sends this process a real SIGINT after its ``chunks``-th chunk
    (if ``send``), as Ctrl-C would."""
    import signal

    seen = [0]

    def callback(event):
        seen[0] += 1
        if send and seen[0] == chunks:
            os.kill(os.getpid(), signal.SIGINT)

    callback.seen = seen
    return callback


def run_chunk(cfg, layer, params, chunk, parallelism, devices, update="sparse"):
    """One chunk through the runner train() would build; (host params, reported loss)."""
    corpus_words = 10**4
    mode = RUNNERS[parallelism]
    rule = mode.update_rule(cfg.replace(optim={"update": update}))
    spec = batch_spec(cfg, layer)
    runner = mode.build(cfg, layer, rule, make_schedule(cfg, corpus_words), spec,
                                        devices, jax.random.key_data(jax.random.key(1)))
    state = runner.place(init_state(jax.tree.map(jnp.copy, params), rule))
    state, loss_sum, _ = runner.run(state, [chunk])
    shapes = {k: v.shape for k, v in params.items()}
    return runner.host_params(state, shapes), float(fetch(loss_sum)), state


def perturbed_params(layer, vocab_size):
    """Initial parameters with every output leaf moved off its start (zero for most), so every
    gradient path is exercised."""
    params = init_params(layer, vocab_size, 8, jax.random.key(0))
    return {k: v if k == "w_in" else v + 0.1 * jax.random.normal(jax.random.fold_in(jax.random.key(5), i), v.shape)
            for i, (k, v) in enumerate(params.items())}


def one_step(path, update):
    """One chunk (2 SGD steps) of registered loss variants on 1 device and on 8 (the most a
    batch of 64 splits into, 8 examples each) and, sparse, for each strategy's first variant on
    2 (the fewest shards); max |difference| to the 1-device run. ``sparse``: every variant but
    those differing from their strategy's first only in ``SHAPE_OPTIONS`` — each gathers and
    scatters its own rows and draws its own noise. ``dense``: the first variant of
    ``DENSE_STRATEGIES`` — a dense step is the 1-device gradient averaged over the devices
    whatever the variant, and the variants' dense and sparse steps are equal on one device
    (test_train.py)."""
    out = {}
    corpus = encode_corpus(path, min_count=1)
    for name, kw, first in variants():
        if update == "dense" and not (first and name in DENSE_STRATEGIES):
            continue
        if not first and set(kw) <= SHAPE_OPTIONS:
            continue
        cfg = variant_config(path, name, kw, optim={"update": update, "batch_size": 64,
                                                    "steps_per_chunk": 2})
        layer = build_layer(cfg, corpus.vocab.counts)
        chunk = next(iter(epoch_chunks(corpus, batch_spec(cfg, layer), 0))).arrays
        params = perturbed_params(layer, len(corpus.vocab))
        counts = (1, 2, 8) if first and update == "sparse" else (1, 8)
        results = {n: run_chunk(cfg, layer, params, chunk, "data" if n > 1 else "single", n, update)[:2]
                   for n in counts}
        diffs = {n: max(float(np.abs(results[n][0][k] - results[1][0][k]).max()) for k in params)
                 for n in counts[1:]}
        moved = max(float(np.abs(results[1][0][k] - np.asarray(params[k])).max()) for k in params)
        label = "-".join([name] + [f"{k}={v}" for k, v in kw.items()] + [update])
        out[label] = {"max_diff": max(diffs.values()), "moved": moved, "devices": list(counts),
                      "loss_diff": max(abs(results[n][1] - results[1][1]) for n in counts[1:])}
    return out


def loss_curve(path):
    """Per-epoch mean loss of a short run on 1 and 4 devices."""
    curves = {}
    for n in (1, 4):
        run = {"epochs": 4, "quiet": True, "parallelism": "data" if n > 1 else "single", "devices": n}
        curves[n] = train(config(path, run=run)).epoch_losses
    return curves


def hlo(path):
    """Count all-reduces whose operand is a whole [V, D] table in the compiled sparse step."""
    out = {}
    corpus = encode_corpus(path, min_count=1)
    for loss, update in [("ns", "sparse"), ("hs", "sparse"), ("ns", "dense")]:
        cfg = config(path, loss={"name": loss}, optim={"update": update, "batch_size": 64,
                                                       "steps_per_chunk": 2})
        layer = build_layer(cfg, corpus.vocab.counts)
        spec = batch_spec(cfg, layer)
        rule = make_update_rule("sgd", update)
        runner = RUNNERS["data"].build(cfg, layer, rule, make_schedule(cfg, len(corpus)), spec, 8,
                                       jax.random.key_data(jax.random.key(1)))
        params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
        state = runner.place(init_state(params, rule))
        text = runner.chunk_fn.lower(state, runner.place_arrays(spec.zero_chunk()),
                                     runner.root_key).compile().as_text()
        shapes = {f"f32[{params[k].shape[0]},8]" for k in params}
        reduces = [l for l in text.splitlines() if "all-reduce" in l]
        out[f"{loss}-{update}"] = {"table_all_reduces": sum(any(s in l for s in shapes) for l in reduces),
                                   "all_gathers": sum("all-gather" in l for l in text.splitlines())}
    return out


def distributed(path, process_id, port, out, checkpoint_dir="", parallelism="data"):
    """One of two processes of a jax.distributed run (data parallel, or the tables' rows split
    over both processes' devices). With a checkpoint directory: process 1 alone gets a SIGINT
    after its third chunk; both processes must stop there, write the checkpoint (for split
    tables, each its own rows), and both then resume it to the end."""
    def cfg(**run):
        return config(path, loss={"name": "ns", "negative_mode": "pair"} if parallelism == "vocab" else {},
                      run={"epochs": 2, "quiet": True, "coordinator": f"127.0.0.1:{port}",
                           "num_processes": 2, "process_id": process_id, "out": out,
                           "parallelism": None if parallelism == "data" else parallelism, **run})
    if not checkpoint_dir:
        r = train(cfg())
        return {"devices": jax.device_count(), "processes": jax.process_count(), "loss": r.mean_loss}
    from sgns_jax.train.loop import TrainingInterrupted

    interrupt = sigint_after(3, send=process_id == 1)
    try:
        train(cfg(checkpoint_dir=checkpoint_dir, out=None), callback=interrupt)
        interrupted = None
    except TrainingInterrupted as e:
        interrupted = interrupt.seen[0]
        message = str(e)
    files = sorted(os.listdir(checkpoint_dir))
    r = train(cfg(checkpoint_dir=checkpoint_dir, resume=True))
    return {"devices": jax.device_count(), "processes": jax.process_count(), "loss": r.mean_loss,
            "interrupted_after_chunks": interrupted, "message": message if interrupted else None,
            "resumed_words": r.resumed_words, "words": r.words, "checkpoint_files": files}


def single_process(path, out, parallelism, devices):
    loss = {"name": "ns", "negative_mode": "pair"} if parallelism == "vocab" else {}
    r = train(config(path, loss=loss, run={"epochs": 2, "quiet": True, "parallelism": parallelism,
                                           "devices": int(devices), "out": out}))
    return {"devices": jax.device_count(), "loss": r.mean_loss}


def vocab_sharded(path):
    """One chunk with the tables' rows split over 8 devices (and 2, for each strategy's first
    variant) vs the unsharded step, for every registered variant whose lookups are rows (not
    whole tables)."""
    out = {}
    corpus = encode_corpus(path, min_count=1)
    for name, kw, first in variants():
        cfg = variant_config(path, name, kw)
        layer = build_layer(cfg, corpus.vocab.counts)
        if any(_whole_table_roles(layer)):
            continue
        chunk = next(iter(epoch_chunks(corpus, batch_spec(cfg, layer), 0))).arrays
        params = perturbed_params(layer, len(corpus.vocab))
        ref, _, _ = run_chunk(cfg, layer, params, chunk, "single", 1)
        diffs = {}
        # 8: rows padded to a multiple of 8 where V is not one; 2 for each strategy's first variant
        for n in (2, 8) if first else (8,):
            got, _, state = run_chunk(cfg, layer, params, chunk, "vocab", n)
            per_device = {k: v.addressable_shards[0].data.shape[0] for k, v in state.params.items()}
            assert all(per_device[k] * n == -(-params[k].shape[0] // n) * n for k in per_device)
            diffs[n] = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
        label = "-".join([name] + [f"{k}={v}" for k, v in kw.items()])
        out[label] = {"max_diff": max(diffs.values()),
                      "moved": float(np.abs(ref["w_in"] - np.asarray(params["w_in"])).max())}
    return out


def vocab_sharded_training(path):
    """A short run with rows split over 3 devices (40 words: 14 rows a device, 2 of them
    padding) vs the same run on one device."""
    loss = {"name": "ns", "negative_mode": "pair"}
    a = train(config(path, loss=loss, run={"epochs": 2, "quiet": True, "parallelism": "single"}))
    b = train(config(path, loss=loss, run={"epochs": 2, "quiet": True, "parallelism": "vocab", "devices": 3}))
    out = {"max_diff": max(float(np.abs(a.params[k] - b.params[k]).max()) for k in a.params),
           "shapes_equal": all(a.params[k].shape == b.params[k].shape for k in a.params),
           "losses": [a.epoch_losses, b.epoch_losses]}
    # Interrupted after its third chunk (SIGINT from the callback), checkpointed (the sharded
    # tables gathered to the host, their padding rows dropped), resumed: the same tables.
    from sgns_jax.train.loop import TrainingInterrupted

    with tempfile.TemporaryDirectory() as ckpt:
        def cfg(**run):
            return config(path, loss=loss, run={"epochs": 2, "quiet": True, "parallelism": "vocab",
                                                "devices": 3, "checkpoint_dir": ckpt, **run})
        try:
            train(cfg(), callback=sigint_after(3))
            out["interrupted"] = False
        except TrainingInterrupted:
            out["interrupted"] = True
        resumed = train(cfg(resume=True))
    out["resume_diff"] = max(float(np.abs(resumed.params[k] - b.params[k]).max()) for k in b.params)
    out["resumed_words"] = resumed.resumed_words
    return out


def workers(path):
    """Worker streams: one round against its definition, base + Σ_w (worker_w − base); and
    whole runs with 2 workers (repeatability, loss next to the one-stream run)."""
    from sgns_jax.engine.workers import WorkerStreams

    cfg = config(path, loss={"name": "ns", "negative_mode": "pair"})
    corpus = encode_corpus(path, min_count=1)
    layer = build_layer(cfg, corpus.vocab.counts)
    spec = batch_spec(cfg, layer)
    chunks = [c.arrays for c in epoch_chunks(corpus, spec, 0)][:3]
    rule = make_update_rule("sgd", "sparse")
    fn = jax.jit(chunk_steps(layer, rule, make_schedule(cfg, len(corpus))), donate_argnums=(0,))
    params = init_params(layer, len(corpus.vocab), 8, jax.random.key(0))
    params["w_out"] = params["w_out"] + 0.1
    key = jax.random.key_data(jax.random.key(1))
    t = spec.steps_per_chunk

    def fresh(step=0):
        return init_state(jax.tree.map(jnp.copy, params), rule)._replace(
            step=jnp.int32(step))

    def run(state, group):
        for arrays in group:
            state, _, _ = fn(state, arrays, key)
        return state

    import sgns_jax.engine.workers as workers_mod

    out = {}
    # chunks per worker (worker 0 gets r chunks, worker 1 the rest: 1) × the two merges.
    for r, merge in ((1, "whole"), (2, "whole"), (1, "rows"), (2, "rows")):
        workers_mod.WHOLE_TABLE_MERGE_BYTES = (1 << 40) if merge == "whole" else 0
        group = chunks[:r + 1]
        streams = WorkerStreams(fn, jax.devices()[:2], key, t, r)
        merged, _, _ = streams.round(streams.place(fresh()), group)
        assert streams.whole_tables == (merge == "whole")
        case = f"{r}_{merge}"
        parts = [run(fresh(), group[:r]), run(fresh(r * t), group[r:])]
        expected = {k: params[k] + sum(np.asarray(p.params[k]) - params[k] for p in parts)
                    for k in params}
        out[f"round_diff_r{case}"] = max(float(np.abs(np.asarray(merged.params[k]) - expected[k]).max())
                                      for k in params)
        out[f"round_step_r{case}"] = int(merged.step)
        # Every replica leaves the round equal to the merged base (only touched rows move).
        out[f"replica_diff_r{case}"] = max(float(np.abs(np.asarray(rep.params[k]) - np.asarray(merged.params[k])).max())
                                        for rep in streams.replicas for k in params)
        out[f"moved_r{case}"] = min(float(np.abs(np.asarray(p.params["w_in"]) - params["w_in"]).max())
                                 for p in parts)
    # Whole tables on CPU devices move by aliasing, not by device_put: the same tables bit for
    # bit, and no table allocated in a round (every table keeps its buffer, round after round).
    workers_mod.WHOLE_TABLE_MERGE_BYTES = 1 << 40
    tables, addresses = [], []
    for host_memory in (True, False):
        streams = WorkerStreams(fn, jax.devices()[:2], key, t, 1)
        streams.host_memory = host_memory
        state = streams.place(fresh())
        seen = set()
        for group in (chunks[0:2], chunks[1:3], chunks[0:2], chunks[1:3]):
            state, _, _ = streams.round(state, group)
            seen.add(tuple(a.unsafe_buffer_pointer() for tree in [state.params] + [rep.params for rep in streams.replicas]
                           for a in tree.values()))
        tables.append({k: np.asarray(v) for k, v in state.params.items()})
        addresses.append(len(seen))
    # A round of one chunk (an epoch's tail: one worker) is that chunk run alone.
    streams = WorkerStreams(fn, jax.devices()[:2], key, t, 1)
    state, _, _ = streams.round(streams.place(fresh()), chunks[:1])
    alone = run(fresh(), chunks[:1])
    out["tail_diff"] = max(float(np.abs(np.asarray(tree[k]) - np.asarray(alone.params[k])).max())
                           for tree in [state.params] + [rep.params for rep in streams.replicas] for k in params)
    # The next round (base and replica 0 have swapped buffers) against its definition.
    b = {k: np.asarray(alone.params[k]) for k in params}

    def from_b(step):
        return init_state({k: jnp.asarray(v) for k, v in b.items()}, rule)._replace(step=jnp.int32(step))

    state, _, _ = streams.round(state, chunks[1:3])
    parts = [run(from_b(t), chunks[1:2]), run(from_b(2 * t), chunks[2:3])]
    expected = {k: b[k] + sum(np.asarray(p.params[k]) - b[k] for p in parts) for k in params}
    out["after_tail_diff"] = max(float(np.abs(np.asarray(tree[k]) - expected[k]).max())
                                 for tree in [state.params] + [rep.params for rep in streams.replicas] for k in params)
    out["alias_vs_device_put_diff"] = max(float(np.abs(tables[0][k] - tables[1][k]).max()) for k in params)
    out["alias_buffer_sets"] = addresses[0]
    out["device_put_buffer_sets"] = addresses[1]
    workers_mod.WHOLE_TABLE_MERGE_BYTES = 48 << 20
    runs = [train(config(path, loss={"name": "ns", "negative_mode": "pair"},
                         run={"epochs": 2, "quiet": True, "parallelism": p, "devices": w}))
            for p, w in (("workers", 2), ("workers", 2), ("single", 1))]
    out["repeat_diff"] = max(float(np.abs(runs[0].params[k] - runs[1].params[k]).max())
                             for k in runs[0].params)
    out["workers_vs_one"] = max(float(np.abs(runs[0].params[k] - runs[2].params[k]).max())
                                for k in runs[0].params)
    out["losses"] = [runs[0].epoch_losses, runs[2].epoch_losses]
    out["examples"] = [runs[0].examples, runs[2].examples]

    # Interrupted after the second round (SIGINT from the callback), resumed: same vectors.
    from sgns_jax.train.loop import TrainingInterrupted

    with tempfile.TemporaryDirectory() as ckpt:
        def cfg(**run):
            return config(path, loss={"name": "ns", "negative_mode": "pair"},
                          run={"epochs": 2, "quiet": True, "parallelism": "workers", "devices": 2,
                               "checkpoint_dir": ckpt, **run})
        try:
            train(cfg(), callback=sigint_after(2))  # after the second round
            out["interrupted"] = False
        except TrainingInterrupted:
            out["interrupted"] = True
        resumed = train(cfg(resume=True))
    out["resume_diff"] = max(float(np.abs(resumed.params[k] - runs[0].params[k]).max())
                             for k in resumed.params)
    return out


def lowering(path):
    """Every registered variant's chunk data-parallel over 2 devices (sparse SGD) and, for each
    strategy's first variant, also with lazy adam, dense SGD and vocabulary-sharded where its
    layer reads rows, lowered for GPU and TPU (the update rule and the sharding are the
    variant's strategy's, whatever its options)."""
    from sgns_jax.engine.lowering import export_chunk, inspect_module

    counts = np.arange(300, 0, -1) * 10
    out = {}
    for name, kw, first in variants():
        cfg = variant_config(path, name, kw, optim={"batch_size": 8, "steps_per_chunk": 4})
        layer = build_layer(cfg, counts)
        modes = [("data", {})]
        if first:
            modes += [("data", {"optimizer": "adam"}), ("data", {"update": "dense"})]
            if not any(_whole_table_roles(layer)):
                modes.append(("vocab", {}))
        for mode, optim in modes:
            c = cfg.replace(run={"parallelism": mode, "devices": 2}, optim=optim)
            m = inspect_module(export_chunk(c, counts))
            label = "-".join([name, *(f"{k}={v}" for k, v in kw.items()), mode, *optim.values()])
            out[label] = {"custom_calls": sorted(m.custom_calls), "dynamic_shapes": m.dynamic_shapes,
                          "devices": m.devices, "params": sorted(m.params),
                          "donated": sorted(m.donated_params), "collectives": sorted(m.collectives)}
    return out


if __name__ == "__main__":
    check = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        path = sys.argv[2] if len(sys.argv) > 2 and os.path.exists(sys.argv[2]) else tiny_corpus(d)
        if check == "distributed":
            result = distributed(path, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], *sys.argv[6:8])
        elif check == "one_step":
            result = one_step(path, sys.argv[2])
        elif check == "single":
            result = single_process(path, *sys.argv[3:6])
        else:
            result = {"loss_curve": loss_curve, "hlo": hlo,
                      "vocab_sharded": vocab_sharded,
                      "vocab_sharded_training": vocab_sharded_training,
                      "workers": workers, "lowering": lowering}[check](path)
    print("RESULT " + json.dumps(result))
