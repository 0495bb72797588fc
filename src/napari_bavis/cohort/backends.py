"""Where participant jobs run: this process, N local processes, or a Dask distributed cluster.

Why: labs already have engines for spreading work (SLURM job arrays with ``--shard i/n``, Dask with
``dask-jobqueue`` for SLURM/PBS/SGE); we hand them independent jobs (:func:`bids.process_scan`) and do
not write a scheduler of our own. Every backend returns the same outcomes in the order of the scans.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from .bids import BidsError, BidsScan, ParticipantOptions, ScanOutcome, process_scan


def parse_dask(text: str) -> int:
    """``local:N`` -> N (workers of a LocalCluster)."""
    kind, _, count = text.partition(":")
    if kind != "local" or not count.isdigit() or int(count) < 1:
        raise BidsError(f"--dask {text!r}: expected local:N (N >= 1 workers); for a running cluster use --dask-scheduler ADDRESS")
    return int(count)


def _init_worker(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(threads)


def _serial(scans, options, done):
    return [done(process_scan(s, options)) for s in scans]


def _processes(scans, options, nprocs, done):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = options.omp_nthreads or max(1, (os.cpu_count() or 1) // nprocs)
    with ProcessPoolExecutor(max_workers=nprocs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(process_scan, s, options) for s in scans]
        return [done(f.result()) for f in futures]


def _dask(scans, options, done, local_workers=None, scheduler=None, processes=True):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise BidsError("--dask needs dask.distributed: pip install distributed") from None
    import dataclasses
    import logging

    cluster = None
    if not scheduler:  # a local cluster: its workers share this machine's cores; its shutdown chatter is noise
        logging.getLogger("distributed").setLevel(logging.ERROR)
        if not options.omp_nthreads:
            options = dataclasses.replace(options, omp_nthreads=max(1, (os.cpu_count() or 1) // local_workers))
    try:
        if scheduler:
            client = Client(scheduler, timeout="30s")
        else:
            cluster = LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=processes,
                                   dashboard_address=None)
            client = Client(cluster)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise BidsError(f"cannot reach the Dask scheduler {scheduler or 'local'}: {' '.join(str(err).split())}") from None
    try:
        futures = client.map(process_scan, list(scans), options=options, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        outcomes: list[ScanOutcome | None] = [None] * len(futures)
        for future in as_completed(futures):
            outcomes[index[future.key]] = done(future.result())
        return outcomes
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_participants(scans: Sequence[BidsScan], options: ParticipantOptions, nprocs: int = 1,
                     dask_local: int | None = None, dask_scheduler: str | None = None, dask_processes: bool = True,
                     on_outcome: Callable[[ScanOutcome], None] | None = None) -> list[ScanOutcome]:
    """Every scan's :func:`process_scan` outcome, in the order of ``scans``.

    ``dask_scheduler``: address of a running Dask scheduler (e.g. one dask-jobqueue started);
    ``dask_local``: a LocalCluster of that many workers (``dask_processes=False``: threads in this
    process); else ``nprocs`` local processes (1: here). ``on_outcome`` sees each as it finishes.
    """
    def done(outcome: ScanOutcome) -> ScanOutcome:
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    try:
        if dask_scheduler or dask_local:
            return _dask(scans, options, done, dask_local, dask_scheduler, dask_processes)
        if nprocs > 1 and len(scans) > 1:
            return _processes(scans, options, min(nprocs, len(scans)), done)
        return _serial(scans, options, done)
    finally:
        if not options.work_dir:  # the default work folder goes when empty (another run may still use it)
            try:
                os.rmdir(Path(options.out_dir) / ".bavis-work")
            except OSError:
                pass
