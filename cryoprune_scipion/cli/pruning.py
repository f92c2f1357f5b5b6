"""`cryoprune train-pruner` and `prune`: the PickerOptimizer classifier on
particle stacks."""
import json
import logging
import os

from ..engine.device import add_device_argument, parse_device
from ..engine.io import InputError, read_stack

logger = logging.getLogger(__name__)


def add_commands(commands):
    train = commands.add_parser(
        "train-pruner", help="train a particle/junk classifier on example stacks")
    train.add_argument("--good", required=True, metavar="STACK.mrcs",
                       help="windows of true particles")
    train.add_argument("--bad", required=True, action="append", metavar="STACK.mrcs",
                       help="windows of one junk class, named by the file stem "
                            "(repeat for several classes)")
    train.add_argument("--out", required=True, metavar="DIR",
                       help="writes DIR/model.pt and DIR/model.json")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--initial-weights", metavar="FILE",
                       help="local ImageNet weights of the backbone or a pruner trained "
                            "earlier (default: from scratch; nothing is downloaded)")
    train.add_argument("--backbone", default="resnet18")
    train.add_argument("--input-size", type=int, default=224,
                       help="network input in pixels; 64-112 px train much faster on CPU")
    train.add_argument("--few-shot", type=int, default=0, metavar="N",
                       help="use at most N examples per class (0: all)")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--batch", type=int, default=32)
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--aux-weight", type=float, default=0.5,
                       help="weight of the auxiliary branch's loss (0: main loss only)")
    train.add_argument("--no-augment", dest="augment", action="store_false")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1)
    add_device_argument(train)
    train.set_defaults(run=run_train)

    prune = commands.add_parser(
        "prune", help="score every window of a stack as particle or junk")
    prune.add_argument("--model", required=True, metavar="DIR/model.pt")
    prune.add_argument("--particles", required=True, metavar="STACK.mrcs")
    prune.add_argument("--out", required=True, metavar="FILE.csv",
                       help="index,score,label per window (0-based index)")
    prune.add_argument("--batch", type=int, default=256)
    prune.add_argument("--resample", action="store_true",
                       help="accept windows of another box size than the model's "
                            "(same field of view at another sampling)")
    prune.add_argument("--threads", type=int, default=1)
    add_device_argument(prune)
    prune.set_defaults(run=run_prune)


def junk_class_names(paths):
    """Each --bad stack names its junk class by its file stem."""
    from ..engine.pruning import PARTICLE
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if PARTICLE in names or len(set(names)) != len(names):
        raise InputError("--bad stacks must have distinct stems other than %r (the "
                         "stem names the junk class); found %s" % (PARTICLE, names))
    return names


def run_train(args):
    import torch
    from ..engine import pruning
    from ..engine.device import torch_device
    torch.set_num_threads(max(args.threads, 1))
    device = torch_device(parse_device(args.device))
    classes = [pruning.PARTICLE] + junk_class_names(args.bad)
    stacks = [read_stack(path) for path in [args.good] + args.bad]
    settings = pruning.TrainSettings(
        backbone=args.backbone, input_size=args.input_size, epochs=args.epochs,
        learning_rate=args.lr, batch=args.batch, val_fraction=args.val_fraction,
        aux_weight=args.aux_weight, few_shot=args.few_shot, seed=args.seed,
        augment=args.augment)
    network, metadata = pruning.train(pruning.Dataset(classes, stacks), settings,
                                      device, args.initial_weights)
    pruning.save(network, metadata, args.out)
    validation = metadata.get("validation")
    if validation:
        logger.info("validation: %s", json.dumps(
            {k: v for k, v in validation.items() if k != "classes"}))
    logger.info("model written to %s", os.path.join(args.out, "model.pt"))


def run_prune(args):
    import torch
    from ..engine import pruning
    from ..engine.device import torch_device
    torch.set_num_threads(max(args.threads, 1))
    device = torch_device(parse_device(args.device))
    network, metadata = pruning.load(args.model, device)
    stack = read_stack(args.particles)
    if len(stack) == 0:
        raise InputError("%s: the stack is empty; nothing to prune" % args.particles)
    pruning.check_box_size(metadata, stack.shape[-1], args.resample, args.particles)
    partial = args.out + ".partial"
    kept = 0
    with open(partial, "w") as f:
        f.write("index,score,label\n")
        for start, scores, labels in pruning.iter_predictions(network, metadata, stack,
                                                              device, args.batch):
            for i, (score, label) in enumerate(zip(scores, labels)):
                f.write("%d,%.6f,%s\n" % (start + i, score, label))
            kept += sum(label == pruning.PARTICLE for label in labels)
            logger.info("%d / %d windows scored", start + len(labels), len(stack))
    os.replace(partial, args.out)
    logger.info("%d of %d windows classified as particles; scores in %s",
                kept, len(stack), args.out)
