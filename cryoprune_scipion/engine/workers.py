"""Micrographs split over several devices: one worker process per GPU, each
on its own share of the micrographs, in order, so that the results are those
of one worker."""
import logging
import multiprocessing
import signal
import sys

LOG_FORMAT = "%(asctime)s %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


def device_groups(gpu_ids, cpu_workers=1):
    """The GPU ids of each worker: one GPU each, or `cpu_workers` workers on
    the CPU (an empty list each)."""
    return [[gpu] for gpu in gpu_ids] if gpu_ids else [[] for _ in range(cpu_workers)]


def shares(items, count):
    """`items` cut into at most `count` consecutive, non-empty shares of
    nearly equal length."""
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    bounds = [0]
    for share in range(count):
        bounds.append(bounds[-1] + size + (share < extra))
    return [items[start:end] for start, end in zip(bounds, bounds[1:])]


def map_over_devices(function, items, groups, *arguments):
    """[function(share, gpu_ids, *arguments) for each share of `items`], one
    share per device group; with one group (or one item) in this process,
    otherwise in fresh processes (CUDA cannot be forked). `function` must be
    importable by name. A failure or an interruption stops all workers."""
    parts = shares(list(items), len(groups))
    if len(parts) <= 1:
        return [function(part, groups[0], *arguments) for part in parts]
    torch = sys.modules.get("torch")  # the command's thread count, for each worker
    threads = torch.get_num_threads() if torch else None
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(len(parts), initializer=_start_worker,
                        initargs=(logging.getLogger().level, threads))
    try:
        results = pool.starmap(function, [(part, gpu_ids) + arguments
                                          for part, gpu_ids in zip(parts, groups)])
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.close()
        pool.join()
    return results


def _start_worker(level, threads):
    """Log like the command, use its torch threads, and on SIGTERM (the pool
    stopping) unwind, so that files half written are removed."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT,
                        stream=sys.stdout)
    if threads:
        import torch
        torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
