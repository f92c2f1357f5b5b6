"""`cryoprune extract`: particle windows cut from micrographs into stacks.

Contract: `cryoprune extract --micrographs FILE... --coords DIR --box PX
--out DIR [--downsample F] [--invert] [--ctf FILE.csv --sampling-rate A]
[--device ...]` reads DIR/<micrograph stem>.csv (x,y and any further
columns) and writes OUT/<micrograph stem>.mrcs and OUT/particles.csv
(micrograph,index,x,y and the carried columns; index 0-based in that
micrograph's stack).
"""
import logging
import os

from ..engine.device import add_device_argument
from ..engine.extraction import PARTICLES_CSV, ExtractionSettings, Microscope
from ..engine.io import InputError
from .arguments import non_negative_float, positive_float, positive_int
from .outputs import RunOutputs, add_output_arguments
from .picking import add_worker_arguments, per_micrograph_results

logger = logging.getLogger(__name__)


def add_commands(commands):
    extract = commands.add_parser(
        "extract", help="cut particle windows around coordinates into one stack per "
                        "micrograph")
    extract.add_argument("--micrographs", nargs="+", required=True, metavar="FILE")
    extract.add_argument("--coords", required=True, metavar="DIR",
                         help="DIR/<micrograph stem>.csv with x,y and any further columns, "
                              "carried over to OUT/particles.csv")
    extract.add_argument("--box", type=positive_int, required=True, metavar="PX",
                         help="window side in micrograph pixels; its centre pixel is "
                              "box // 2")
    extract.add_argument("--out", required=True, metavar="DIR",
                         help="writes DIR/<micrograph stem>.mrcs and DIR/particles.csv")
    extract.add_argument("--downsample", type=positive_float, default=1.0, metavar="F",
                         help="Fourier-crop the windows by this factor (1: keep)")
    extract.add_argument("--invert", action="store_true",
                         help="invert the contrast (black particles become white)")
    extract.add_argument("--ctf", metavar="FILE.csv",
                         help="CTF per micrograph (micrograph,defocus_u,defocus_v,"
                              "defocus_angle; Angstrom, degrees): windows are phase-flipped")
    extract.add_argument("--sampling-rate", type=positive_float, metavar="A",
                         help="Angstrom per micrograph pixel (needed with --ctf; written "
                              "into the stacks' headers)")
    defaults = Microscope()
    extract.add_argument("--voltage", type=positive_float, default=defaults.voltage,
                         help="kV")
    extract.add_argument("--cs", type=non_negative_float,
                         default=defaults.spherical_aberration,
                         help="spherical aberration, mm")
    extract.add_argument("--amplitude-contrast", type=non_negative_float,
                         default=defaults.amplitude_contrast)
    extract.add_argument("--threads", type=positive_int, default=1)
    add_worker_arguments(extract)
    add_device_argument(extract)
    add_output_arguments(extract)
    extract.set_defaults(run=run_extract)


def run_extract(args):
    import torch
    from ..engine.extraction import (coordinate_files, extract_files, particle_fields,
                                     read_micrograph_ctf)
    from ..engine.io import write_table
    from ..engine.workers import device_groups, map_over_devices
    torch.set_num_threads(args.threads)
    settings = ExtractionSettings(args.box, args.downsample, args.invert, args.sampling_rate)
    settings.validate()
    if args.ctf and not args.sampling_rate:
        raise InputError("--ctf needs the micrograph pixel size: give --sampling-rate")
    coordinate_files(args.micrographs, args.coords)
    ctf_table = read_micrograph_ctf(args.ctf, args.micrographs) if args.ctf else None
    stacks = per_micrograph_results(args.micrographs, ".mrcs")
    out = RunOutputs(args, inputs=args.micrographs + [args.coords, args.ctf]).folder(
        args.out, results=stacks + [PARTICLES_CSV])
    microscope = Microscope(args.voltage, args.cs, args.amplitude_contrast)
    shares = map_over_devices(extract_files, args.micrographs,
                              device_groups(args.gpu_ids, args.cpu_workers), args.coords,
                              out, settings, ctf_table, microscope)
    particles = [row for rows, _ in shares for row in rows]
    totals = {key: sum(counts[key] for _, counts in shares)
              for key in ("kept", "edge", "outside", "duplicates")}
    write_table(os.path.join(out, PARTICLES_CSV), particle_fields(particles), particles)
    logger.info("%d particles of %d px from %d micrographs in %s; left out: %d boxes "
                "crossing the edge, %d centres off the micrograph, %d repeated",
                totals["kept"], settings.size, len(args.micrographs), args.out,
                totals["edge"], totals["outside"], totals["duplicates"])
