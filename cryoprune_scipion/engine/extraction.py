"""Particle extraction: windows cut around coordinates from each micrograph,
phase-flipped when the CTF is known, Fourier-cropped, contrast-inverted on
request and normalised on a background ring; one MRC stack per micrograph.

Coordinates are read from `<coords>/<micrograph stem>.csv` (x, y and any
further columns, carried over to the particle table). Boxes that cross the
micrograph edge, centres off the micrograph and particles listed twice are
left out and counted.
"""
import csv
import dataclasses
import logging
import os
from collections import Counter

import numpy as np

from .contrastive import CtfParameters, phase_flip
from .coordinates import sanitize_coordinates
from .device import torch_device
from .io import (InputError, micrograph_stem, read_coordinates, read_micrograph, read_stack,
                 write_stack)
from .windows import downsample_windows, downsampled_box, extract_windows, fourier_crop

logger = logging.getLogger(__name__)

# Background: the pixels outside this fraction of the half box, RELION's
# default background circle; the particle should fit inside it.
BACKGROUND_RADIUS = 0.75
PARTICLES_CSV = "particles.csv"
PARTICLE_FIELDS = ["micrograph", "index", "x", "y"]
CTF_FIELDS = ["micrograph", "defocus_u", "defocus_v", "defocus_angle"]


@dataclasses.dataclass
class ExtractionSettings:
    box: int                     # window side in micrograph pixels
    downsample: float = 1.0      # factor of the Fourier crop
    invert: bool = False         # contrast inversion (particles white)
    sampling_rate: float = None  # Angstrom per micrograph pixel, for the CTF and headers

    @property
    def size(self):
        """The window side after downsampling."""
        return self.box if self.downsample == 1 else downsampled_box(self.box,
                                                                     self.downsample)

    def validate(self):
        if self.box < 2:
            raise InputError("--box %d is too small; give at least 2 pixels" % self.box)
        if self.downsample < 1:
            raise InputError("--downsample %g: give a factor of 1 or more (1: keep the "
                             "pixel size)" % self.downsample)


@dataclasses.dataclass
class Microscope:
    voltage: float = 300.0              # kV
    spherical_aberration: float = 2.7   # mm
    amplitude_contrast: float = 0.1


def read_micrograph_ctf(path, micrographs):
    """The CTF of each micrograph from a CSV with the columns micrograph (the
    micrograph's file stem), defocus_u, defocus_v (Angstrom) and
    defocus_angle (degrees): {stem: (defocus_u, defocus_v, defocus_angle)}."""
    if not os.path.isfile(path):
        raise InputError("%s: CTF table not found; check the --ctf path" % path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not set(CTF_FIELDS) <= set(reader.fieldnames or ()):
            raise InputError("%s: a CTF table needs the columns %s"
                             % (path, ",".join(CTF_FIELDS)))
        table = {}
        for row in reader:
            try:
                table[row["micrograph"]] = tuple(float(row[c]) for c in CTF_FIELDS[1:])
            except (TypeError, ValueError):
                raise InputError("%s, line %d: the defocus values must be numbers"
                                 % (path, reader.line_num)) from None
    missing = [p for p in micrographs if micrograph_stem(p) not in table]
    if missing:
        raise InputError("%s has no CTF for %d micrograph(s), the first %s; give one row "
                         "per micrograph (micrograph = its file name without suffix)"
                         % (path, len(missing), micrograph_stem(missing[0])))
    return table


def coordinate_files(micrographs, coords_dir):
    """`coords_dir/<stem>.csv` of each micrograph, checked to be there."""
    files = [os.path.join(coords_dir, micrograph_stem(p) + ".csv") for p in micrographs]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise InputError("%d micrograph(s) have no coordinate file, the first %s; give "
                         "one <micrograph name>.csv per micrograph in --coords (a header "
                         "x,y alone lists no particles)" % (len(missing), missing[0]))
    return files


def normalise_background(windows, radius=BACKGROUND_RADIUS):
    """Windows (n, size, size) shifted and scaled to zero mean and unit
    standard deviation of their background ring: the pixels farther than
    `radius` x size / 2 from the centre pixel size // 2."""
    size = windows.shape[-1]
    offsets = np.arange(size) - size // 2
    background = np.hypot(*np.meshgrid(offsets, offsets)) > radius * size / 2
    ring = windows[:, background]
    mean = ring.mean(axis=1)[:, None, None]
    std = ring.std(axis=1)[:, None, None]
    return ((windows - mean) / np.maximum(std, 1e-12)).astype(np.float32)


def extract_micrograph(path, rows, settings, ctf=None, microscope=None, device=None):
    """The particles of one micrograph: windows (n, size, size) float32, the
    rows kept (in input order) and the counts of `sanitize_coordinates`."""
    import torch
    micrograph = read_micrograph(path)
    xy = np.array([(row["x"], row["y"]) for row in rows], dtype=float).reshape(-1, 2)
    kept, counts = sanitize_coordinates(xy, micrograph.shape, settings.box, whole_box=True)
    windows, _ = extract_windows(micrograph, xy[kept], settings.box)
    windows = windows.astype(np.float64)
    if ctf is not None and len(kept):
        microscope = microscope or Microscope()
        u, v, angle = (np.full(len(kept), value) for value in ctf)
        windows = phase_flip(windows, CtfParameters(
            u, v, angle, settings.sampling_rate, **dataclasses.asdict(microscope)),
            np.arange(len(kept)))
    cropped = fourier_crop(torch.from_numpy(windows).to(device or "cpu"), settings.size)
    windows = cropped.cpu().numpy()
    if settings.invert:
        windows = -windows
    return normalise_background(windows), [rows[i] for i in kept], counts


def extract_files(micrographs, gpu_ids, coords_dir, out_dir, settings, ctf_table=None,
                  microscope=None):
    """Extract each micrograph to `out_dir/<stem>.mrcs` (none when it keeps
    no particle). Returns the particle rows (micrograph, index, x, y and the
    carried columns) and the summed counts; one worker's share of
    `extract`, on the first GPU of `gpu_ids` or the CPU."""
    device = torch_device(gpu_ids)
    sampling = settings.sampling_rate and settings.sampling_rate * settings.box / settings.size
    particles, totals = [], Counter()
    for path, table in zip(micrographs, coordinate_files(micrographs, coords_dir)):
        stem = micrograph_stem(path)
        ctf = ctf_table[stem] if ctf_table else None
        windows, kept, counts = extract_micrograph(path, read_coordinates(table), settings,
                                                   ctf, microscope, device)
        if len(windows):
            write_stack(os.path.join(out_dir, stem + ".mrcs"), windows, sampling)
        particles += [dict(row, micrograph=stem, index=index) for index, row in
                      enumerate(kept)]
        totals.update(counts)
        logger.info("%s: %d particles; left out: %d boxes crossing the edge, %d centres "
                    "off the micrograph, %d repeated", path, counts["kept"], counts["edge"],
                    counts["outside"], counts["duplicates"])
    return particles, totals


def particle_fields(particles):
    """The particle table's columns: micrograph, index, x, y, then the
    carried columns in order of first appearance."""
    fields = dict.fromkeys(PARTICLE_FIELDS)
    for row in particles:
        fields.update(dict.fromkeys(row))
    return list(fields)


def read_windows(path, downsample=1.0):
    """The windows of a stack, or of a folder that `extract` wrote (its
    particles.csv names a stack <micrograph>.mrcs in the folder and the
    0-based index in it for each particle, in the order returned),
    Fourier-cropped by `downsample`: a `WindowStack`, read as indexed."""
    if downsample < 1:
        raise InputError("--downsample %g: give a factor of 1 or more (1: keep the "
                         "pixel size)" % downsample)
    if os.path.isdir(path):
        stacks, rows = _read_particle_table(path)
    else:
        stack = read_stack(path)
        stacks, rows = {path: stack}, [(path, index) for index in range(len(stack))]
    shapes = {stack.shape[1:] for stack in stacks.values()}
    if len(shapes) > 1 or any(rows != columns for rows, columns in shapes):
        raise InputError("%s: windows of %s px; all windows must be square and of one "
                         "box size" % (path, sorted(shapes)))
    box = shapes.pop()[-1] if shapes else 2
    return WindowStack(stacks, rows, box if downsample == 1 else
                       downsampled_box(box, downsample))


class WindowStack:
    """(n, size, size) float32 windows, each a (stack, index) row of
    memory-mapped stacks, read and Fourier-cropped only when indexed, so a
    batch at a time sits in memory."""
    ndim = 3

    def __init__(self, stacks, rows, size):
        self.stacks, self.rows = stacks, rows
        self.shape = (len(rows), size, size)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        indices = np.arange(len(self.rows))[key]
        if np.ndim(indices) == 0:
            return self[[int(indices)]][0]
        windows = np.stack([self.stacks[stack][index] for stack, index in
                            (self.rows[i] for i in indices)]) if len(indices) else \
            np.zeros((0, self.shape[1], self.shape[1]), dtype=np.float32)
        return downsample_windows(windows, self.shape[-1])


def _read_particle_table(folder):
    """{stem: stack} and the (stem, index) rows of an extract folder."""
    table = os.path.join(folder, PARTICLES_CSV)
    if not os.path.isfile(table):
        raise InputError("%s: no %s; give a stack or a folder written by `cryoprune "
                         "extract`" % (folder, PARTICLES_CSV))
    with open(table, newline="", encoding="utf-8-sig") as f:
        rows = [(row["micrograph"], int(row["index"])) for row in csv.DictReader(f)]
    stacks = {stem: read_stack(os.path.join(folder, stem + ".mrcs"))
              for stem in dict.fromkeys(stem for stem, _ in rows)}
    for stem, index in rows:
        if index >= len(stacks[stem]):
            raise InputError("%s: particle %d of %s, which holds %d; extract again"
                             % (table, index, stem, len(stacks[stem])))
    return stacks, rows
