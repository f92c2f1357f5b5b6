"""`cryoprune classify2d`: contrastive 2D classification of a particle stack.

Contract: `cryoprune classify2d --particles STACK.mrcs --classes K --out DIR
[--epochs N] [--device ...]` writes DIR/classes.csv (index,class: 0-based
index in the stack, class 1..K) and DIR/averages.mrcs (class k at position
k); also DIR/alignment.csv and the encoder (DIR/encoder.pt, DIR/model.json).
"""
import logging
import os

from ..constants import MODEL_METADATA
from ..engine.device import add_device_argument
from ..engine.classify2d import ClassificationSettings
from ..engine.contrastive import Augmentations, TrainingSettings
from ..engine.io import InputError, read_model_metadata
from .arguments import non_negative_float, non_negative_int, positive_float, positive_int
from .outputs import RunOutputs, add_output_arguments

CLASSIFICATION_RESULTS = ["classes.csv", "alignment.csv", "averages.mrcs", "encoder.pt",
                          MODEL_METADATA, "class_scores.csv"]
CLASSIFICATION_STATE = ["checkpoint.pt"]

logger = logging.getLogger(__name__)


def add_commands(commands):
    parser = commands.add_parser(
        "classify2d", help="contrastive 2D classification with aligned class averages")
    parser.add_argument("--particles", required=True, nargs="+", metavar="STACK.mrcs",
                        help="particle stack(s) of one box size, taken in order")
    parser.add_argument("--classes", required=True, type=positive_int, metavar="K")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--epochs", type=non_negative_int, default=TrainingSettings.epochs,
                        help="contrastive training epochs (0 with --initial-encoder: "
                             "use that encoder as it is)")
    parser.add_argument("--batch", type=positive_int, default=TrainingSettings.batch)
    parser.add_argument("--temperature", type=positive_float,
                        default=TrainingSettings.temperature, help="NT-Xent temperature")
    parser.add_argument("--feature-size", type=positive_int,
                        default=TrainingSettings.feature_size)
    parser.add_argument("--working-size", type=positive_int,
                        default=ClassificationSettings.working_size,
                        help="particles are Fourier-cropped to this size (64-128 px)")
    parser.add_argument("--align-iterations", type=positive_int,
                        default=ClassificationSettings.align_iterations)
    parser.add_argument("--feature-rotations", type=positive_int,
                        default=ClassificationSettings.feature_rotations,
                        help="features averaged over this many in-plane rotations")
    parser.add_argument("--lr", type=positive_float, default=TrainingSettings.learning_rate)
    parser.add_argument("--no-rotation", dest="rotation", action="store_false",
                        help="no in-plane rotation augmentation")
    parser.add_argument("--flip", action="store_true",
                        help="mirror augmentation (mirror views end in one class)")
    parser.add_argument("--max-shift", type=non_negative_float, default=Augmentations.shift,
                        help="shift augmentation, fraction of the box")
    parser.add_argument("--noise", type=non_negative_float, default=Augmentations.noise,
                        help="largest added noise, in units of the particle's std (0: off)")
    parser.add_argument("--no-lowpass", dest="lowpass", action="store_false")
    parser.add_argument("--no-jitter", dest="jitter", action="store_false",
                        help="no contrast and brightness jitter")
    parser.add_argument("--no-mask", dest="mask", action="store_false")
    parser.add_argument("--ctf", metavar="FILE.csv",
                        help="per-particle CTF (index,defocus_u,defocus_v,defocus_angle; "
                             "Angstrom, degrees): particles are phase-flipped first")
    parser.add_argument("--sampling-rate", type=positive_float,
                        help="Angstrom per pixel of the stack (default: its header)")
    parser.add_argument("--voltage", type=positive_float, default=300.0, help="kV")
    parser.add_argument("--cs", type=non_negative_float, default=2.7,
                        help="spherical aberration, mm")
    parser.add_argument("--amplitude-contrast", type=non_negative_float, default=0.1)
    parser.add_argument("--initial-encoder", metavar="DIR/encoder.pt",
                        help="start from an encoder written by an earlier classify2d")
    parser.add_argument("--seed", type=int, default=TrainingSettings.seed)
    parser.add_argument("--threads", type=positive_int, default=1)
    add_refinement_arguments(parser)
    add_device_argument(parser)
    add_output_arguments(parser, resumable=True)
    parser.set_defaults(run=run_classify2d)


def add_refinement_arguments(parser):
    """Refinement of the classes by multi-reference alignment and their
    ranking (engine/refine.py, engine/ranking.py)."""
    from ..engine.ranking import ORDERS
    from ..engine.refine import MODES, RefinementSettings
    defaults = RefinementSettings()
    group = parser.add_argument_group("refinement and ranking")
    group.add_argument("--refine-passes", type=non_negative_int, default=defaults.passes,
                       help="passes aligning every particle to every class average and "
                            "reassigning it (0: the clustering's classes as they are)")
    group.add_argument("--refine-mode", choices=MODES, default=defaults.mode,
                       help="hard: best class; soft: maximum-likelihood class weights")
    group.add_argument("--refine-angle-step", type=positive_float, default=defaults.angle_step,
                       help="degrees between the in-plane rotations searched")
    group.add_argument("--refine-max-shift", type=non_negative_float,
                       default=defaults.max_shift,
                       help="largest shift searched, fraction of the box")
    group.add_argument("--refine-search-size", type=positive_int,
                       default=defaults.search_size,
                       help="px: the search runs on particles Fourier-cropped to this size")
    group.add_argument("--class-order", choices=ORDERS,
                       default=ClassificationSettings.class_order,
                       help="number the classes by size (1: the largest) or by resolution "
                            "of the half-set FRC (1: the best)")


def refinement_from_args(args):
    from ..engine.refine import RefinementSettings
    refinement = RefinementSettings(passes=args.refine_passes, mode=args.refine_mode,
                                    angle_step=args.refine_angle_step,
                                    max_shift=args.refine_max_shift,
                                    search_size=args.refine_search_size)
    refinement.check()
    return refinement


def settings_from_args(args):
    if args.classes < 1:
        raise InputError("--classes must be at least 1, found %d" % args.classes)
    if not 16 <= args.working_size <= 512:
        raise InputError("--working-size %d: use 64 to 128 px" % args.working_size)
    if args.temperature <= 0:
        raise InputError("--temperature must be positive, found %g" % args.temperature)
    if args.epochs == 0 and not args.initial_encoder:
        raise InputError("--epochs 0 uses an initial encoder as it is; give "
                         "--initial-encoder DIR/encoder.pt or --epochs 1 or more")
    augmentations = Augmentations(rotation=args.rotation, flip=args.flip,
                                  shift=args.max_shift, noise=args.noise,
                                  lowpass=args.lowpass, jitter=args.jitter, mask=args.mask)
    training = TrainingSettings(epochs=args.epochs, batch=args.batch,
                                temperature=args.temperature,
                                feature_size=args.feature_size, learning_rate=args.lr,
                                seed=args.seed, augmentations=augmentations)
    return ClassificationSettings(args.classes, args.working_size, args.align_iterations,
                                  args.feature_rotations, training,
                                  refinement_from_args(args), args.class_order)


def stack_sampling_rate(path):
    import mrcfile
    with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
        return float(mrc.voxel_size.x) or None


def run_classify2d(args):
    import torch
    from ..engine import classify2d, contrastive
    from ..engine.device import torch_device
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch_device(args.gpu_ids)
    settings = settings_from_args(args)
    n = sum(len(s) for s in contrastive.open_stacks(args.particles))
    if args.initial_encoder:
        read_model_metadata(contrastive.encoder_weights(args.initial_encoder), "encoder")
    out = RunOutputs(args, inputs=args.particles + [args.ctf, args.initial_encoder]).folder(
        args.out, results=CLASSIFICATION_RESULTS, state=CLASSIFICATION_STATE)
    sampling_rate = args.sampling_rate or stack_sampling_rate(args.particles[0])
    ctf = None
    if args.ctf:
        if not sampling_rate:
            raise InputError("--ctf needs the pixel size: give --sampling-rate (the stack "
                             "header has none)")
        ctf = contrastive.read_ctf_table(args.ctf, n, sampling_rate, voltage=args.voltage,
                                         spherical_aberration=args.cs,
                                         amplitude_contrast=args.amplitude_contrast)
    result = classify2d.classify(args.particles, settings, args.out, device, ctf,
                                 args.initial_encoder,
                                 os.path.join(out, CLASSIFICATION_STATE[0]), args.resume)
    classify2d.write_results(result, args.out, sampling_rate, metadata={
        "epochs": args.epochs, "temperature": args.temperature,
        "phase_flipped": bool(ctf), "particles": len(result.labels)})
    logger.info("wrote %d classes of %d particles to %s", args.classes,
                len(result.labels), args.out)
