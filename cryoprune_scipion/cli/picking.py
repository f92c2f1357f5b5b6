"""`cryoprune preprocess`, `train-picker` and `pick`."""
import argparse
import dataclasses
import os

from ..constants import MODEL_METADATA, MODEL_WEIGHTS
from ..engine.device import add_device_argument
from ..engine.io import InputError, micrograph_stem, read_model_metadata, write_table
from ..engine.dihedral import TTA_COPIES
from ..engine.picking import METRICS_CSV, PREPROCESSING_TRIALS, Detection, PickerTraining
from ..engine.preprocess import PreprocessSettings, WAVELET_MODES
from .arguments import (fraction, non_negative_float, non_negative_int, positive_float,
                        positive_int, probability)
from .outputs import RunOutputs, add_output_arguments

PICKER_RESULTS = [MODEL_WEIGHTS, MODEL_METADATA, METRICS_CSV]
PICKER_STATE = ["dataset", "training", PREPROCESSING_TRIALS]


def add_commands(commands):
    preprocess = commands.add_parser(
        "preprocess", help="preprocess micrographs (resize, wavelet, Wiener, CLAHE) to PNG")
    preprocess.add_argument("--micrographs", nargs="+", required=True, metavar="FILE")
    preprocess.add_argument("--out", required=True, metavar="DIR")
    _add_preprocess_arguments(preprocess)
    preprocess.add_argument("--box", type=positive_int, metavar="PX",
                            help="particle box in micrograph pixels (needed by --flatten; "
                                 "without it --working-box is off)")
    preprocess.add_argument("--threads", type=positive_int, default=1)
    add_output_arguments(preprocess)
    preprocess.set_defaults(run=run_preprocess)

    train = commands.add_parser(
        "train-picker", help="train a YOLO picker on annotated micrographs")
    train.add_argument("--micrographs", nargs="+", required=True, metavar="FILE")
    train.add_argument("--coords", required=True, metavar="DIR",
                       help="DIR/<micrograph stem>.csv with x,y[,class]")
    train.add_argument("--box", type=positive_int, required=True, metavar="PX",
                       help="box size in micrograph pixels")
    train.add_argument("--out", required=True, metavar="DIR")
    train.add_argument("--epochs", type=positive_int, default=PickerTraining.epochs)
    train.add_argument("--patience", type=positive_int, default=PickerTraining.patience,
                       help="stop after this many epochs without improvement")
    train.add_argument("--batch", type=positive_int, default=PickerTraining.batch)
    train.add_argument("--lr", type=positive_float, default=PickerTraining.learning_rate,
                       help="AdamW learning rate")
    train.add_argument("--tile", type=non_negative_int, default=PickerTraining.tile,
                       help="training tile side in working pixels, a multiple of 32 "
                            "(default: room for four boxes, at least 256)")
    train.add_argument("--model", default=PickerTraining.model,
                       help="ultralytics family and size: yolov8n..yolov8x, yolo11n..yolo11x")
    train.add_argument("--initial-weights", metavar="FILE",
                       help="local .pt weights to start from (nothing is downloaded)")
    train.add_argument("--val-fraction", type=fraction, default=PickerTraining.val_fraction,
                       help="width of the strip of each micrograph held out to validate "
                            "on and to choose the picking threshold on, as a fraction of "
                            "the micrograph (0: validate on the training tiles)")
    train.add_argument("--no-augment", dest="augment", action="store_false")
    train.add_argument("--classes", type=lambda s: [c for c in s.split(",") if c],
                       help="view class names in order, comma-separated "
                            "(default: the sorted names of the class column)")
    train.add_argument("--seed", type=int, default=PickerTraining.seed)
    train.add_argument("--threads", type=positive_int, default=1)
    _add_preprocess_arguments(train).add_argument(
        "--choose-preprocessing", action="store_true",
        help="train with the filters above and with --no-preprocess, and keep the picker "
             "whose validation strips score the higher view F1 (a pick of the wrong view "
             "counts as false); twice the training. Without validation strips "
             "(--val-fraction 0, or too few particles in them) the filters' picker is kept")
    add_device_argument(train)
    add_output_arguments(train, resumable=True)
    train.set_defaults(run=run_train)

    pick = commands.add_parser("pick", help="pick particles with a trained YOLO model")
    pick.add_argument("--model", required=True, metavar="FILE", help="OUT/model.pt")
    pick.add_argument("--micrographs", nargs="+", required=True, metavar="FILE")
    pick.add_argument("--out", required=True, metavar="DIR")
    pick.add_argument("--threshold", type=probability,
                      help="confidence threshold (default: the one the picker chose at "
                           "training on its validation strips for this --tta, or %s for "
                           "pickers without one)" % Detection.threshold)
    pick.add_argument("--iou", type=probability, default=Detection.iou,
                      help="NMS IoU threshold")
    pick.add_argument("--max-det", type=positive_int, default=Detection.max_det,
                      help="maximum detections per micrograph")
    pick.add_argument("--tta", type=int, choices=TTA_COPIES, default=Detection.tta,
                      help="test-time augmentation: pick also in this many mirrored and "
                           "quarter-turned copies of each micrograph and average each "
                           "particle's scores (1: off); one detection pass per copy")
    pick.add_argument("--border", type=non_negative_float, default=None, metavar="PX",
                      help="drop picks closer than this to the micrograph edge "
                           "(default: half the box size; 0 keeps all)")
    pick.add_argument("--threads", type=positive_int, default=1)
    add_worker_arguments(pick)
    add_device_argument(pick)
    add_output_arguments(pick)
    pick.set_defaults(run=run_pick)


def _add_preprocess_arguments(parser):
    group = parser.add_argument_group("preprocessing")
    defaults = PreprocessSettings()
    group.add_argument("--working-size", type=non_negative_int,
                       default=defaults.working_size,
                       help="long side in pixels after resizing, at least (0: keep)")
    group.add_argument("--working-box", type=non_negative_int, default=defaults.working_box,
                       metavar="PX",
                       help="raise the working size, up to the micrograph's own, until "
                            "the particle box spans this many working pixels (0: off)")
    group.add_argument("--wavelet", default=defaults.wavelet,
                       help="wavelet of the detail suppression ('none': off)")
    group.add_argument("--wavelet-levels", type=positive_int,
                       default=defaults.wavelet_levels)
    group.add_argument("--wavelet-mode", choices=WAVELET_MODES, default=defaults.wavelet_mode)
    group.add_argument("--wiener", type=non_negative_int, default=defaults.wiener_size,
                       help="Wiener filter window (0: off)")
    group.add_argument("--clahe-tiles", type=non_negative_int, default=defaults.clahe_tiles,
                       help="CLAHE tiles per side (0: off)")
    group.add_argument("--clahe-clip", type=positive_float, default=defaults.clahe_clip)
    group.add_argument("--no-normalize", dest="normalize", action="store_false")
    group.add_argument("--flatten", type=non_negative_float, metavar="BOXES",
                       help="subtract the background blurred with a sigma of this many "
                            "particle boxes, then normalise by the interior's median and "
                            "MAD (0: off; default %s, with --no-preprocess %s)"
                            % (defaults.flatten, PreprocessSettings.disabled().flatten))
    group.add_argument("--no-preprocess", action="store_true",
                       help="only resize, flatten the background and normalise "
                            "(all filters off)")
    return group


def preprocess_settings(args):
    if args.no_preprocess:
        settings = PreprocessSettings.disabled(args.working_size, args.working_box)
    else:
        settings = PreprocessSettings(
            working_size=args.working_size, working_box=args.working_box,
            wavelet="" if args.wavelet.lower() in ("", "none") else args.wavelet,
            wavelet_levels=args.wavelet_levels, wavelet_mode=args.wavelet_mode,
            wiener_size=args.wiener, clahe_tiles=args.clahe_tiles,
            clahe_clip=args.clahe_clip)
    settings = dataclasses.replace(settings, normalize=args.normalize)
    if args.flatten is not None:
        settings = dataclasses.replace(settings, flatten=args.flatten)
    return settings


def per_micrograph_results(micrographs, suffix):
    """`<micrograph stem><suffix>` for each micrograph; two micrographs of
    one name would write one file."""
    names = {}
    for path in micrographs:
        other = names.setdefault(micrograph_stem(path) + suffix, path)
        if other != path:
            raise InputError("micrographs %s and %s have the same name, so their results "
                             "would share %s; rename or link one of them"
                             % (other, path, micrograph_stem(path) + suffix))
    return list(names)


def run_preprocess(args):
    from ..engine.preprocess import preprocess_micrograph_files, save_png
    settings = preprocess_settings(args)
    if settings.flatten and not args.box:
        raise InputError("background flattening (--flatten, on with --no-preprocess) needs "
                         "--box, the particle box in micrograph pixels; or give --flatten 0")
    RunOutputs(args, inputs=args.micrographs).folder(
        args.out, results=per_micrograph_results(args.micrographs, ".png"))
    processed = preprocess_micrograph_files(args.micrographs, settings, args.threads,
                                            args.box or 0)
    for path, (image, _) in zip(args.micrographs, processed):
        save_png(os.path.join(args.out, micrograph_stem(path) + ".png"), image)


def run_train(args):
    from ..engine.picking import train_picker, train_picker_choosing_preprocessing
    if args.choose_preprocessing and args.no_preprocess:
        raise InputError("--choose-preprocessing compares the filters with --no-preprocess: "
                         "give one of the two")
    RunOutputs(args, inputs=args.micrographs + [args.coords, args.initial_weights]).folder(
        args.out, results=PICKER_RESULTS, state=PICKER_STATE)
    training = dict(model=args.model, initial_weights=args.initial_weights,
                    epochs=args.epochs, patience=args.patience, batch=args.batch,
                    learning_rate=args.lr, tile=args.tile, val_fraction=args.val_fraction,
                    augment=args.augment, class_names=args.classes, gpu_ids=args.gpu_ids,
                    threads=args.threads, seed=args.seed)
    train = train_picker_choosing_preprocessing if args.choose_preprocessing else train_picker
    metadata = train(args.micrographs, args.coords, args.box, args.out,
                     preprocess_settings(args), resume=args.resume, **training)
    print("final: " + ", ".join("%s %.3f" % item for item in
                                metadata["final_metrics"].items()))


def add_worker_arguments(parser):
    """With several GPUs in --device, one worker per GPU takes its share of
    the micrographs (pick, extract). The hidden --cpu-workers does the same
    on the CPU, so that the split is tested on machines without GPUs."""
    parser.add_argument("--cpu-workers", type=positive_int, default=1,
                        help=argparse.SUPPRESS)


def run_pick(args):
    from ..engine.workers import device_groups, map_over_devices
    read_model_metadata(args.model, "picker")  # before any worker starts
    RunOutputs(args, inputs=args.micrographs + [args.model]).folder(
        args.out, results=per_micrograph_results(args.micrographs, ".csv"))
    map_over_devices(pick_share, args.micrographs,
                     device_groups(args.gpu_ids, args.cpu_workers), args.out, args.model,
                     args.threshold, args.iou, args.max_det, args.border, args.threads,
                     args.tta)


def pick_share(micrographs, gpu_ids, out, model, threshold, iou, max_det, border, threads,
               tta):
    """Pick `micrographs` on the first GPU of `gpu_ids` (or the CPU) into
    out/<micrograph stem>.csv: one worker's share of `pick`."""
    from ..engine.picking import PICK_FIELDS, pick
    for path, picks in pick(model, micrographs, threshold, iou, max_det, border, gpu_ids,
                            threads, tta=tta):
        write_table(os.path.join(out, micrograph_stem(path) + ".csv"), PICK_FIELDS, picks)
        print("%s: %d particles" % (path, len(picks)), flush=True)
