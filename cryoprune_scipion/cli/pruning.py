"""`cryoprune train-pruner`, `prune` and `base-pruner`: the PickerOptimizer
classifier on particle stacks."""
import dataclasses
import json
import logging
import os

from ..constants import MODEL_METADATA, MODEL_WEIGHTS
from ..engine.base_pruner import BaseRecipe, default_training
from ..engine.device import add_device_argument
from ..engine.dihedral import TTA_COPIES
from ..engine.extraction import read_windows
from ..engine.io import InputError, read_model_metadata, replacing
from ..engine.pruning import IMAGENET_INPUT_SIZE, SCRATCH_INPUT_SIZE, TTA, TrainSettings
from .arguments import (at_least, fraction, non_negative_float, non_negative_int,
                        positive_float, positive_int)
from .outputs import RunOutputs, add_output_arguments

PRUNER_RESULTS = [MODEL_WEIGHTS, MODEL_METADATA]
PRUNER_STATE = ["checkpoint.pt"]
MIN_BASE_MICROGRAPHS = 10  # with 2 ice blobs and 2 aggregates each, enough of every class

logger = logging.getLogger(__name__)


def add_commands(commands):
    train = commands.add_parser(
        "train-pruner", help="train a particle/junk classifier on example stacks")
    train.add_argument("--good", required=True, metavar="STACK.mrcs|DIR",
                       help="windows of true particles: a stack, or a folder written by "
                            "`cryoprune extract`")
    train.add_argument("--bad", required=True, action="append", metavar="STACK.mrcs|DIR",
                       help="windows of one junk class, a stack or an extract folder, "
                            "named by the file stem or folder name (repeat for several "
                            "classes)")
    add_downsample_argument(train)
    train.add_argument("--out", required=True, metavar="DIR",
                       help="writes DIR/model.pt and DIR/model.json")
    train.add_argument("--epochs", type=positive_int, default=TrainSettings.epochs)
    train.add_argument("--initial-weights", metavar="FILE",
                       help="local ImageNet weights of the backbone or a pruner trained "
                            "earlier (default: from scratch; nothing is downloaded)")
    train.add_argument("--backbone", default=TrainSettings.backbone)
    train.add_argument("--input-size", type=non_negative_int, default=TrainSettings.input_size,
                       help="network input in pixels; 0 (default): automatic, %d px for "
                            "ImageNet weights as in the paper, an earlier pruner's own, "
                            "%d px from scratch" % (IMAGENET_INPUT_SIZE, SCRATCH_INPUT_SIZE))
    train.add_argument("--few-shot", type=non_negative_int, default=TrainSettings.few_shot,
                       metavar="N",
                       help="use at most N examples per class (0: all)")
    train.add_argument("--lr", type=positive_float, default=TrainSettings.learning_rate)
    train.add_argument("--batch", type=positive_int, default=TrainSettings.batch)
    train.add_argument("--val-fraction", type=fraction, default=TrainSettings.val_fraction)
    train.add_argument("--aux-weight", type=non_negative_float,
                       default=TrainSettings.aux_weight,
                       help="weight of the auxiliary branch's loss (0: main loss only)")
    train.add_argument("--no-augment", dest="augment", action="store_false")
    train.add_argument("--seed", type=int, default=TrainSettings.seed)
    train.add_argument("--threads", type=positive_int, default=1)
    add_device_argument(train)
    add_output_arguments(train, resumable=True)
    train.set_defaults(run=run_train)

    prune = commands.add_parser(
        "prune", help="score every window of a stack as particle or junk")
    prune.add_argument("--model", required=True, metavar="DIR/model.pt")
    prune.add_argument("--particles", required=True, metavar="STACK.mrcs|DIR",
                       help="a stack, or a folder written by `cryoprune extract`")
    prune.add_argument("--out", required=True, metavar="FILE.csv",
                       help="index,score,label per window (0-based index in the stack, "
                            "or row of the folder's particles.csv)")
    add_downsample_argument(prune)
    prune.add_argument("--batch", type=positive_int, default=256)
    prune.add_argument("--tta", type=int, choices=TTA_COPIES, default=TTA,
                       help="test-time augmentation: average the scores over this many "
                            "mirrored and turned copies of each window, one network pass "
                            "each (default %(default)s)")
    prune.add_argument("--resample", action="store_true",
                       help="accept windows of another box size than the model's "
                            "(same field of view at another sampling)")
    prune.add_argument("--threads", type=positive_int, default=1)
    add_device_argument(prune)
    add_output_arguments(prune)
    prune.set_defaults(run=run_prune)

    base = commands.add_parser(
        "base-pruner", help="pretrain a pruner on simulated windows, a starting point "
                            "for train-pruner --initial-weights without any download")
    base.add_argument("--out", required=True, metavar="DIR",
                      help="writes DIR/model.pt and DIR/model.json")
    base.add_argument("--backbone", default=TrainSettings.backbone)
    base.add_argument("--micrographs", type=at_least(MIN_BASE_MICROGRAPHS),
                      default=BaseRecipe.micrographs,
                      help="simulated 512 x 512 micrographs, about 17 windows each "
                           "(the default takes about a minute on two CPU cores)")
    base.add_argument("--epochs", type=positive_int,
                      default=default_training().epochs)
    base.add_argument("--threads", type=positive_int, default=1)
    add_device_argument(base)
    add_output_arguments(base)
    base.set_defaults(run=run_base)


def add_downsample_argument(parser):
    parser.add_argument("--downsample", type=positive_float, default=1.0, metavar="F",
                        help="Fourier-crop the windows by this factor as they are read "
                             "(1: keep); `extract --downsample` does it at extraction")


def junk_class_names(paths):
    """Each --bad stack names its junk class by its file stem, each extract
    folder by its name."""
    from ..engine.pruning import PARTICLE
    names = [os.path.splitext(os.path.basename(os.path.normpath(p)))[0] for p in paths]
    if PARTICLE in names or len(set(names)) != len(names):
        raise InputError("--bad stacks must have distinct stems other than %r (the "
                         "stem names the junk class); found %s" % (PARTICLE, names))
    return names


def check_initial_weights(path):
    """A model with a model.json beside it must be a pruner; bare weights
    files (ImageNet backbones) are checked when read."""
    if os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(path)), MODEL_METADATA)):
        read_model_metadata(path, "pruner")


def run_train(args):
    import torch
    from ..engine import pruning
    from ..engine.device import torch_device
    torch.set_num_threads(args.threads)
    device = torch_device(args.gpu_ids)
    classes = [pruning.PARTICLE] + junk_class_names(args.bad)
    dataset = pruning.Dataset(classes, [read_windows(p, args.downsample)
                                        for p in [args.good] + args.bad])
    settings = pruning.TrainSettings(
        backbone=args.backbone, input_size=args.input_size, epochs=args.epochs,
        learning_rate=args.lr, batch=args.batch, val_fraction=args.val_fraction,
        aux_weight=args.aux_weight, few_shot=args.few_shot, seed=args.seed,
        augment=args.augment)
    settings.validate()
    if args.initial_weights:
        check_initial_weights(args.initial_weights)
    out = RunOutputs(args, inputs=[args.good, args.initial_weights] + args.bad).folder(
        args.out, results=PRUNER_RESULTS, state=PRUNER_STATE)
    network, metadata = pruning.train(dataset, settings, device, args.initial_weights,
                                      checkpoint=os.path.join(out, PRUNER_STATE[0]),
                                      resume=args.resume)
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
    torch.set_num_threads(args.threads)
    device = torch_device(args.gpu_ids)
    read_model_metadata(args.model, "pruner")
    network, metadata = pruning.load(args.model, device)
    stack = read_windows(args.particles, args.downsample)
    if len(stack) == 0:
        raise InputError("%s: the stack is empty; nothing to prune" % args.particles)
    pruning.check_box_size(metadata, stack.shape[-1], args.resample, args.particles)
    out = RunOutputs(args, inputs=[args.model, args.particles]).file(args.out)
    kept = 0
    with replacing(out) as partial, open(partial, "w") as f:
        f.write("index,score,label\n")
        for start, scores, labels in pruning.iter_predictions(network, metadata, stack,
                                                              device, args.batch, args.tta):
            for i, (score, label) in enumerate(zip(scores, labels)):
                f.write("%d,%.6f,%s\n" % (start + i, score, label))
            kept += sum(label == pruning.PARTICLE for label in labels)
            logger.info("%d / %d windows scored", start + len(labels), len(stack))
    logger.info("%d of %d windows classified as particles; scores in %s",
                kept, len(stack), args.out)


def run_base(args):
    import torch
    from ..engine import base_pruner, pruning
    from ..engine.device import torch_device
    torch.set_num_threads(args.threads)
    device = torch_device(args.gpu_ids)
    training = dataclasses.replace(default_training(), backbone=args.backbone,
                                   epochs=args.epochs)
    training.validate()
    RunOutputs(args).folder(args.out, results=PRUNER_RESULTS)
    network, metadata = base_pruner.pretrain(
        BaseRecipe(micrographs=args.micrographs, training=training), device, logger.info)
    pruning.save(network, metadata, args.out)
    logger.info("base pruner written to %s (validation on simulated windows: accuracy "
                "%.3f)", os.path.join(args.out, MODEL_WEIGHTS),
                metadata["validation"]["class_accuracy"])
