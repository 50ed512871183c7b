"""A corpus scan process: ``main`` run in a fresh interpreter by
:class:`sgns_jax.data.corpus._ScanProcesses` (with the parent's ``sys.path``).

It reads jobs (pickled tuples, see ``corpus._scan_part``) from its standard input until that
closes, scans each part of the corpus into the ids file the job names, and writes one pickled
``("ok", result)`` or ``("error", exception)`` per job to its standard output, in order.

A fresh interpreter rather than a ``multiprocessing`` worker: those import the parent's main
module again, which runs the caller's script a second time where it has no
``if __name__ == "__main__"`` guard (a traceback, and no scan). Nothing here imports JAX.
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> None:
    # The results go to a copy of the standard output; anything printed goes to stderr.
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    from sgns_jax.data.corpus import _scan_part

    jobs = sys.stdin.buffer
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:  # the parent closed our input: no more parts (or it is gone)
            return
        try:
            reply = ("ok", _scan_part(job))
        except Exception as e:  # noqa: BLE001 — handed to the parent, which raises it
            reply = ("error", e)
        try:
            pickle.dump(reply, results, protocol=pickle.HIGHEST_PROTOCOL)
            results.flush()
        except BrokenPipeError:  # the parent stopped reading (interrupted)
            return


if __name__ == "__main__":
    main()
