"""Choosing the torch device from a CLI `--device` value."""
import logging

logger = logging.getLogger(__name__)


def parse_device(values):
    """`cpu`, or GPU ids as Scipion's %(GPU)s gives them ("0", "0 1", "0,1"),
    to a list: [] for the CPU, else the integer ids."""
    if isinstance(values, str):
        values = [values]
    tokens = [t for v in values or ["cpu"] for t in str(v).replace(",", " ").split()]
    if not tokens or tokens == ["cpu"]:
        return []
    try:
        return [int(t) for t in tokens]
    except ValueError:
        from .io import InputError
        raise InputError("--device takes 'cpu' or GPU ids such as 0 or 0,1; found %r"
                         % " ".join(tokens))


def resolve_gpus(values, cpu_fallback=False):
    """The GPU ids of a `--device` value, checked against the GPUs torch
    sees, before any work: [] for the CPU. GPUs that are not there are an
    error, or with `cpu_fallback` a warning and the CPU."""
    gpu_ids = parse_device(values)
    if not gpu_ids:
        return []
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [g for g in gpu_ids if not 0 <= visible_index(g) < count]
    if not missing:
        return gpu_ids
    seen = "torch sees %d GPU(s)" % count if count else "torch sees no CUDA GPU"
    if cpu_fallback:
        logger.warning("WARNING: GPU %s asked for but %s: running on the CPU, which is "
                       "much slower", ",".join(map(str, missing)), seen)
        return []
    from .io import InputError
    remedy = ("give GPU ids from 0 to %d, or --device cpu" % (count - 1) if count else
              "give --device cpu or check the CUDA installation")
    raise InputError("--device %s: %s; %s" % (",".join(map(str, gpu_ids)), seen, remedy))


def torch_device(gpu_ids):
    """The torch device for the first GPU of a list checked by
    `resolve_gpus`, or the CPU for an empty list."""
    import torch
    if not gpu_ids:
        return torch.device("cpu")
    return torch.device("cuda", visible_index(gpu_ids[0]))


def visible_index(gpu_id):
    """Scipion may already restrict CUDA_VISIBLE_DEVICES to the step's GPUs:
    then physical id N is the position of N in that list."""
    import os
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if v.strip()]
    return visible.index(str(gpu_id)) if str(gpu_id) in visible else gpu_id


def add_device_argument(parser):
    parser.add_argument("--device", nargs="+", default=["cpu"],
                        help="'cpu' or GPU ids: 0, '0 1' or 0,1 (default: cpu)")
    parser.add_argument("--cpu-fallback", action="store_true",
                        help="run on the CPU, with a warning, when the GPUs asked for are "
                             "not there (otherwise that is an error)")
