"""Choosing the torch device from a CLI `--device` value."""


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


def torch_device(gpu_ids):
    """The torch device for the first GPU of the list, or the CPU; refuses
    GPUs when torch sees none, rather than silently running on the CPU."""
    import torch
    if not gpu_ids:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from .io import InputError
        raise InputError("GPU %s was asked for but torch sees no CUDA device; run "
                         "with --device cpu or check the CUDA installation"
                         % ",".join(map(str, gpu_ids)))
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
