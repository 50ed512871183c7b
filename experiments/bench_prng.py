"""How long one step's noise draw takes with each of JAX's PRNG implementations.

    python experiments/bench_prng.py [--shape 1024,5] [--steps 32] [--repeats 20]

Draws ``jax.random.bits`` of ``--shape`` (pair mode's default: 1,024 pairs × 5 negatives) with
a key ``fold_in(root, step)`` per step inside a ``lax.scan`` of ``--steps`` steps, as the
training chunk does, and prints microseconds per step. The run's keys use
``sgns_jax.train.step.PRNG_IMPL``; this is the measurement behind that choice.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

IMPLS = ["threefry2x32", "threefry4x32", "philox2x32", "philox4x32", "rbg", "unsafe_rbg"]


def per_step_draws(shape: tuple[int, ...], steps: int):
    def chunk(root):
        def body(acc, step):
            bits = jax.random.bits(jax.random.fold_in(root, step), shape, jnp.uint32)
            return acc + bits.sum(), None  # consume the draw so XLA keeps it

        return jax.lax.scan(body, jnp.uint32(0), jnp.arange(steps))[0]

    return jax.jit(chunk)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="1024,5")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    print(f"{jax.default_backend()}: uint32 {list(shape)} per step, {args.steps} steps a call")
    for impl in IMPLS:
        root = jax.random.key(0, impl=impl)
        f = per_step_draws(shape, args.steps)
        jax.block_until_ready(f(root))
        t = time.perf_counter()
        for _ in range(args.repeats):
            out = f(root)
        jax.block_until_ready(out)
        us = (time.perf_counter() - t) / args.repeats / args.steps * 1e6
        print(f"{impl:14s} {us:8.1f} µs per step")


if __name__ == "__main__":
    main()
