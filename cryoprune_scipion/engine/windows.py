"""Square windows cut from a micrograph around particle coordinates."""
import numpy as np

from .io import InputError


def extract_windows(micrograph, coordinates, box, pad="mean"):
    """Windows of `box` x `box` pixels centred on `coordinates` ((n, 2) x, y
    in pixels of the micrograph, x the column).

    Returns windows (n, box, box) float32 and `inside` (n,) bool, False for a
    window that crosses the micrograph edge; the part outside is filled with
    the micrograph mean (`pad="mean"`) or its mirror image (`pad="reflect"`)
    so that edge windows stay usable but can be told apart.
    """
    micrograph = np.asarray(micrograph, dtype=np.float32)
    coordinates = np.asarray(coordinates, dtype=float).reshape(-1, 2)
    box = int(box)
    if box < 2:
        raise InputError("box size %d is too small; give at least 2 pixels" % box)
    if pad not in ("mean", "reflect"):
        raise InputError("window padding %r unknown; use 'mean' or 'reflect'" % pad)
    rows, cols = micrograph.shape
    # The window centre is pixel box//2, as in the Scipion/Xmipp convention.
    left = np.round(coordinates[:, 0]).astype(int) - box // 2
    top = np.round(coordinates[:, 1]).astype(int) - box // 2
    inside = (left >= 0) & (top >= 0) & (left + box <= cols) & (top + box <= rows)
    windows = np.empty((len(coordinates), box, box), dtype=np.float32)
    for i in np.flatnonzero(inside):
        windows[i] = micrograph[top[i]:top[i] + box, left[i]:left[i] + box]
    if not inside.all():
        margin = box if pad == "mean" else min(box, rows - 1, cols - 1)
        padded = _pad(micrograph, margin, pad)
        for i in np.flatnonzero(~inside):
            windows[i] = _cut_padded(padded, micrograph.shape, margin, top[i], left[i], box)
    return windows, inside


def _pad(micrograph, margin, pad):
    if pad == "mean":
        return np.pad(micrograph, margin, mode="constant",
                      constant_values=float(micrograph.mean()))
    return np.pad(micrograph, margin, mode="reflect")


def _cut_padded(padded, shape, margin, top, left, box):
    """A window from the padded micrograph; a centre farther out than the
    margin (a coordinate off the micrograph) is filled with the padding
    value wherever the padding does not reach."""
    rows, cols = shape
    window = np.full((box, box), padded[0, 0] if margin else 0.0, dtype=np.float32)
    r0, c0 = top + margin, left + margin
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + box, rows + 2 * margin), min(c0 + box, cols + 2 * margin)
    if rs < re and cs < ce:
        window[rs - r0:re - r0, cs - c0:ce - c0] = padded[rs:re, cs:ce]
    return window


def fourier_crop(images, size):
    """Torch images (..., box, box) brought to (..., size, size) by cropping
    their centred Fourier transform (no aliasing, the mean kept); `size` >=
    box leaves them as they are. Runs where the images are (CPU or GPU)."""
    import torch
    box = images.shape[-1]
    if size >= box:
        return images
    spectrum = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1))
    start = box // 2 - size // 2
    cropped = spectrum[..., start:start + size, start:start + size]
    return torch.fft.ifft2(torch.fft.ifftshift(cropped, dim=(-2, -1))).real * (size / box) ** 2


def downsample_windows(windows, size):
    """Windows (n, box, box) as a float32 array of (n, size, size), by
    `fourier_crop` in double precision; `size` <= box."""
    import torch
    windows = np.asarray(windows, dtype=np.float32)
    box = windows.shape[-1]
    if size > box:
        raise InputError("cannot downsample %d px windows to %d px; use a "
                         "downsampling factor of 1 or more" % (box, size))
    if size == box:
        return windows
    cropped = fourier_crop(torch.from_numpy(windows.astype(np.float64)), size)
    return cropped.numpy().astype(np.float32)


def downsampled_box(box, factor):
    """The window size after downsampling a `box` px window by `factor`,
    kept even."""
    return max(2, int(round(box / factor / 2.0)) * 2)

