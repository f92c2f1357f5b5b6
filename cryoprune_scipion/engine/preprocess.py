"""Contrast-restoring micrograph preprocessing of the YOLOv5 KLH picking
study: resize to a working size (bicubic), Daubechies wavelet with the detail
coefficients suppressed, Wiener filter, CLAHE, normalisation. Optionally the
background (ice thickness, carbon) is flattened first and the normalisation is
then robust: median and MAD of the interior.

Every step can be switched off. The resize keeps an exact map between the
working grid and the micrograph's own pixels (`WorkingGrid`), so coordinates
found on the preprocessed image go back to the micrograph exactly.
"""
import dataclasses
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .io import InputError, read_micrograph, replacing

WAVELET_MODES = ("remove", "soft")
INTERIOR_MARGIN = 0.03  # per side; leaves out the band of padding artefacts at the edges
# Robust standard deviations either side spanning 0..255 after robust normalisation:
# the beta-galactosidase interiors' 0.1 and 99.9 percentiles lie near -4.5 and 3.5.
ROBUST_SPAN = 4.0
# The working size is raised, up to the micrograph's own, until a particle box
# spans this many working pixels, so that small particles are not shrunk below
# what the detector learns from. Beta-galactosidase's box of 128 of 4096 px
# spans 32 px at 1024; at 64 px (2048) F1 rises by 0.009 and AP by 0.014 for
# 4.6 times the training and 3 times the picking time on the CPU
# (BENCHMARKS.md, "Working scale").
WORKING_BOX = 32


@dataclasses.dataclass
class PreprocessSettings:
    working_size: int = 1024      # long side in pixels; 0 keeps the micrograph's size
    working_box: int = WORKING_BOX
    wavelet: str = "db15"         # "" switches the wavelet step off
    wavelet_levels: int = 2
    wavelet_mode: str = "remove"  # remove the details (paper) or soft-threshold them
    wiener_size: int = 9          # 0 switches the Wiener filter off
    clahe_tiles: int = 4          # tiles per side; 0 switches CLAHE off
    clahe_clip: float = 0.01
    normalize: bool = True
    flatten: float = 0.0          # background sigma in particle boxes; 0 switches it off

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Settings saved with a model; those saved before the working box
        existed keep their fixed working size."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"working_box": 0, **{k: v for k, v in values.items() if k in known}})

    @classmethod
    def disabled(cls, working_size=1024, working_box=WORKING_BOX):
        """No filters: the micrograph at the working scale, its background
        flattened with a sigma of 2 boxes and robustly normalised (test F1
        0.841 against 0.822 without flattening on beta-galactosidase,
        BENCHMARKS.md). The dataclass keeps flattening off, so models
        trained before it pick as they were trained."""
        return cls(working_size=working_size, working_box=working_box, wavelet="",
                   wiener_size=0, clahe_tiles=0, normalize=True, flatten=2.0)

    def grid(self, shape, box_size=0):
        """The working grid of a micrograph of `shape` (rows, columns): its
        long side at the working size, raised up to the micrograph's own
        until a box of `box_size` micrograph pixels spans `working_box`
        working pixels."""
        long_side = max(shape)
        size = self.working_size or long_side
        if self.working_box and box_size:
            size = max(size, min(long_side, round(long_side * self.working_box / box_size)))
        return WorkingGrid.for_shape(shape, size)

    @property
    def robust(self):
        """Normalised on the interior's median and MAD, to one grey scale for
        all micrographs: after background flattening."""
        return bool(self.flatten and self.normalize)

    def validate(self):
        if self.working_size < 0:
            raise InputError("working size must be 0 (keep) or a positive number of "
                             "pixels, found %s" % self.working_size)
        if self.working_box < 0:
            raise InputError("working box must be 0 (off) or a positive number of "
                             "pixels, found %s" % self.working_box)
        if self.wavelet:
            import pywt
            if self.wavelet not in pywt.wavelist(kind="discrete"):
                raise InputError("unknown wavelet '%s'; use a discrete wavelet such "
                                 "as db15 or sym8" % self.wavelet)
        if self.wavelet_mode not in WAVELET_MODES:
            raise InputError("wavelet mode must be one of %s, found '%s'"
                             % (", ".join(WAVELET_MODES), self.wavelet_mode))
        if self.wiener_size and self.wiener_size % 2 == 0:
            raise InputError("the Wiener window must be odd, found %d"
                             % self.wiener_size)
        if self.flatten < 0:
            raise InputError("the background flattening sigma must be 0 (off) or a "
                             "positive number of particle boxes, found %s" % self.flatten)


@dataclasses.dataclass(frozen=True)
class WorkingGrid:
    """Map between a micrograph's pixels and the resized working image.

    Pixel centres sit at integer coordinates; the resize maps the image
    extent [-0.5, n - 0.5] onto [-0.5, m - 0.5] along each axis.
    """
    original_shape: tuple  # (rows, columns)
    working_shape: tuple

    @classmethod
    def for_shape(cls, shape, working_size):
        rows, columns = shape
        if not working_size:
            return cls((rows, columns), (rows, columns))
        factor = working_size / max(rows, columns)
        return cls((rows, columns), (max(1, round(rows * factor)),
                                     max(1, round(columns * factor))))

    @property
    def scale_x(self):
        return self.working_shape[1] / self.original_shape[1]

    @property
    def scale_y(self):
        return self.working_shape[0] / self.original_shape[0]

    def to_working(self, x, y):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return (x + 0.5) * self.scale_x - 0.5, (y + 0.5) * self.scale_y - 0.5

    def to_original(self, x, y):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return (x + 0.5) / self.scale_x - 0.5, (y + 0.5) / self.scale_y - 0.5


def resize(image, shape):
    """Bicubic resize; anti-aliased when shrinking."""
    from skimage.transform import resize as sk_resize
    if tuple(image.shape) == tuple(shape):
        return image.astype(np.float32, copy=False)
    shrinking = shape[0] < image.shape[0]
    return sk_resize(image, shape, order=3, mode="reflect",
                     anti_aliasing=shrinking, preserve_range=True).astype(np.float32)


def suppress_wavelet_details(image, wavelet="db15", levels=2, mode="remove"):
    """Reconstruct from a wavelet decomposition whose detail coefficients are
    removed (the paper) or soft-thresholded at the universal noise level."""
    import pywt
    levels = min(levels, pywt.dwt_max_level(min(image.shape), wavelet)) or 1
    coefficients = pywt.wavedec2(image, wavelet, level=levels, mode="symmetric")
    if mode == "remove":
        details = [tuple(np.zeros_like(d) for d in level) for level in coefficients[1:]]
    else:
        finest_diagonal = coefficients[-1][2]
        sigma = np.median(np.abs(finest_diagonal)) / 0.6745
        threshold = sigma * np.sqrt(2 * np.log(image.size))
        details = [tuple(pywt.threshold(d, threshold, mode="soft") for d in level)
                   for level in coefficients[1:]]
    restored = pywt.waverec2([coefficients[0]] + details, wavelet, mode="symmetric")
    return restored[:image.shape[0], :image.shape[1]].astype(np.float32)


def wiener(image, size=9):
    """Adaptive Wiener filter; flat regions (zero local variance, where the
    filter is undefined) are kept as they are."""
    from scipy.signal import wiener as sp_wiener
    with np.errstate(divide="ignore", invalid="ignore"):
        filtered = sp_wiener(image.astype(np.float64), (size, size))
    return np.where(np.isfinite(filtered), filtered, image).astype(np.float32)


def clahe(image, tiles=4, clip=0.01):
    """Contrast-limited adaptive histogram equalisation on tiles x tiles
    regions; the result is spread uniformly over [0, 1]."""
    from skimage.exposure import equalize_adapthist
    kernel = (max(1, image.shape[0] // tiles), max(1, image.shape[1] // tiles))
    return equalize_adapthist(_to_unit_range(image), kernel_size=kernel,
                              clip_limit=clip, nbins=256).astype(np.float32)


def normalize(image):
    """Zero mean, unit standard deviation (a constant image becomes zeros)."""
    std = float(image.std())
    return ((image - image.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def flatten_background(image, sigma):
    """Subtract the background: a Gaussian blur of `sigma` working pixels,
    much wider than a particle, so that only ice and carbon gradients go."""
    from scipy.ndimage import gaussian_filter
    background = gaussian_filter(image.astype(np.float32), sigma, mode="reflect")
    return (image - background).astype(np.float32)


def interior(shape, margin=INTERIOR_MARGIN):
    """Slices leaving out `margin` of each side."""
    return tuple(slice(round(n * margin), n - round(n * margin)) for n in shape)


def robust_normalize(image, margin=INTERIOR_MARGIN):
    """Zero median, unit robust standard deviation (1.4826 MAD), both measured
    on the interior so that the edge artefacts do not set the scale."""
    inside = image[interior(image.shape, margin)]
    median = float(np.median(inside))
    spread = 1.4826 * float(np.median(np.abs(inside - median)))
    return ((image - median) / (spread if spread > 0 else 1.0)).astype(np.float32)


def _to_unit_range(image, low=0.1, high=99.9):
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    return np.clip((image - lo) / (hi - lo), 0, 1).astype(np.float32)


def preprocess(image, settings, box_size=0):
    """The preprocessed working image and its grid; `box_size` (micrograph
    pixels) sets the scale of background flattening."""
    grid = settings.grid(image.shape, box_size)
    image = resize(image, grid.working_shape)
    if settings.flatten:
        if not box_size:
            raise InputError("background flattening needs the particle box size")
        image = flatten_background(
            image, settings.flatten * box_size * max(grid.scale_x, grid.scale_y))
    if settings.wavelet:
        image = suppress_wavelet_details(image, settings.wavelet,
                                         settings.wavelet_levels, settings.wavelet_mode)
    if settings.wiener_size:
        image = wiener(image, settings.wiener_size)
    if settings.clahe_tiles:
        image = clahe(image, settings.clahe_tiles, settings.clahe_clip)
    if settings.normalize:
        image = robust_normalize(image) if settings.robust else normalize(image)
    return image, grid


def to_uint8(image, span=None):
    """8-bit picture of a working image: -span..span spans 0..255, or without
    a span its 0.1..99.9 percentile range (about +-3 standard deviations of a
    normalised image)."""
    if span:
        unit = np.clip((image + span) / (2 * span), 0, 1)
    else:
        unit = _to_unit_range(image)
    return np.round(unit * 255).astype(np.uint8)


def preprocess_micrograph_file(path, settings, box_size=0):
    """Read and preprocess one micrograph: the 8-bit working image and its grid."""
    image, grid = preprocess(read_micrograph(path), settings, box_size)
    return to_uint8(image, ROBUST_SPAN if settings.robust else None), grid


def preprocess_micrograph_files(paths, settings, threads=1, box_size=0):
    """Preprocess micrographs in parallel processes; results in input order."""
    settings.validate()
    if threads <= 1 or len(paths) <= 1:
        return [preprocess_micrograph_file(p, settings, box_size) for p in paths]
    with ProcessPoolExecutor(max_workers=min(threads, len(paths))) as pool:
        return list(pool.map(preprocess_micrograph_file, paths, [settings] * len(paths),
                             [box_size] * len(paths)))


def save_png(path, image):
    """Write an 8-bit image completely or not at all."""
    from PIL import Image
    with replacing(path) as partial:
        Image.fromarray(image).save(partial, format="PNG")
