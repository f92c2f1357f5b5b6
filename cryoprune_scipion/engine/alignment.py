"""2D alignment in Fourier space and weighted class averages.

Convention (x is the column, y the row, centre at (box - 1) / 2): a particle
with alignment (angle, shift) is its class reference rotated by `angle`
degrees, the rotation that takes the x axis towards the y axis, and then
shifted by (shift_x, shift_y) pixels. Undoing it brings the particle onto
the reference.

Rotation: both images are resampled on polar rings and the correlation over
all angles comes from one FFT along the angle axis. Translation: phase
correlation (the cross-power spectrum, amplitude-normalised) inside a
low-pass band.
Both run batch-wise in torch, on the GPU when the tensors live there.
"""
import dataclasses

import numpy as np

N_ANGLES = 720
# Exponent of the amplitude normalisation in phase correlation: 1 is pure
# phase correlation, which lets frequencies without signal (interpolation
# error, noise) weigh as much as the rest; 0.5 keeps the peak sharp and
# measured ten times more precise on noiseless projections.
WHITEN = 0.5


@dataclasses.dataclass
class Alignment:
    """Per-particle result, arrays in the order of the particles."""
    angles: np.ndarray       # degrees
    shifts: np.ndarray       # (n, 2) pixels, x then y
    correlations: np.ndarray  # Pearson correlation with the reference after alignment


def transform(images, angles, shifts):
    """Rotate (n, box, box) tensors by `angles` (degrees) about the centre,
    then shift them by `shifts` (n, 2) pixels."""
    import torch
    import torch.nn.functional as F
    n, box = images.shape[0], images.shape[-1]
    theta = torch.deg2rad(angles.to(images))
    cos, sin = torch.cos(theta), torch.sin(theta)
    # grid_sample maps output to input coordinates: the inverse of the motion.
    matrix = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1)
    offset = -(matrix @ (2 * shifts.to(images) / box).unsqueeze(-1))
    grid = F.affine_grid(torch.cat([matrix, offset], -1), (n, 1, box, box),
                         align_corners=False)
    return F.grid_sample(images.unsqueeze(1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False).squeeze(1)


def untransform(images, angles, shifts):
    """Undo `transform`: shift back, then rotate back."""
    import torch
    theta = torch.deg2rad(-angles.to(images))
    cos, sin = torch.cos(theta), torch.sin(theta)
    shifts = shifts.to(images)
    back = -torch.stack([cos * shifts[:, 0] - sin * shifts[:, 1],
                         sin * shifts[:, 0] + cos * shifts[:, 1]], -1)
    return transform(images, -angles.to(images), back)


def lowpass_filter(box, cutoff, device=None):
    """Gaussian low-pass on the unshifted FFT grid; `cutoff` in cycles per
    pixel (0.5 is Nyquist) is where the filter falls to exp(-1/2)."""
    import torch
    k = torch.fft.fftfreq(box, device=device)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    return torch.exp(-k2 / (2 * cutoff ** 2))


def apply_filter(images, transfer):
    import torch
    return torch.fft.ifft2(torch.fft.fft2(images) * transfer).real


def polar_grid(box, n_angles=N_ANGLES, device=None):
    """Sampling grid (1, radii, angles, 2) for grid_sample: rings from 1 px to
    just inside the box, angles from the x axis towards y."""
    import torch
    radii = torch.arange(1, box // 2 - 1, dtype=torch.float32, device=device)
    phi = torch.arange(n_angles, dtype=torch.float32, device=device) * (2 * np.pi / n_angles)
    x = radii[:, None] * torch.cos(phi)[None, :]
    y = radii[:, None] * torch.sin(phi)[None, :]
    return torch.stack([2 * x / box, 2 * y / box], -1).unsqueeze(0), radii


def to_polar(images, grid):
    import torch.nn.functional as F
    polar = F.grid_sample(images.unsqueeze(1), grid.expand(images.shape[0], -1, -1, -1),
                          mode="bicubic", align_corners=False).squeeze(1)
    return polar - polar.mean(dim=-1, keepdim=True)


def estimate_rotation(images, reference, grid, radii):
    """Angle (degrees) by which each image is the reference rotated, from
    the ring-weighted angular cross-correlation, to a fraction of a step."""
    return _angular_peak(to_polar(images, grid), to_polar(reference[None], grid), radii)


def _angular_peak(polar, polar_reference, radii):
    import torch
    spectrum = torch.fft.rfft(polar, dim=-1)
    reference_spectrum = torch.fft.rfft(polar_reference, dim=-1)
    cross = (spectrum * reference_spectrum.conj() * radii[:, None]).sum(dim=1)
    correlation = torch.fft.irfft(cross, n=polar.shape[-1], dim=-1)
    return _peak_1d(correlation) * (360.0 / polar.shape[-1])


def initial_rotation(images, reference, grid, radii, max_shift, band):
    """Rotation that does not depend on the shift: the Fourier amplitudes
    turn with the image but ignore translations. They are centrosymmetric,
    so of the two candidates 180 degrees apart the one whose shifted,
    rotated reference correlates best is kept."""
    import torch
    box = images.shape[-1]
    # The zero frequency sits at box // 2 after fftshift, half a pixel off
    # the rotation centre of an even box.
    centred_grid = grid + (1.0 - box % 2) / box

    def amplitudes(x):
        return torch.fft.fftshift(torch.fft.fft2(x).abs(), dim=(-2, -1)).sqrt()
    angle = _angular_peak(to_polar(amplitudes(images), centred_grid),
                          to_polar(amplitudes(reference[None]), centred_grid), radii)
    mask = circular_mask(box, device=images.device)
    best, best_score = None, None
    for candidate in (angle, angle + 180.0):
        rotated = transform(reference.expand(len(images), -1, -1), candidate,
                            torch.zeros(len(images), 2, device=images.device))
        shifts = estimate_shift(images, rotated, max_shift, band)
        score = pearson(untransform(images, candidate, shifts), reference, mask)
        if best is None:
            best, best_score = candidate.clone(), score
        else:
            better = score > best_score
            best = torch.where(better, candidate, best)
            best_score = torch.where(better, score, best_score)
    return best % 360


def _peak_1d(values):
    """Circular arg-max with a parabolic fit through the neighbours."""
    import torch
    n = values.shape[-1]
    best = values.argmax(dim=-1)
    rows = torch.arange(values.shape[0], device=values.device)
    left, centre, right = (values[rows, (best - 1) % n], values[rows, best],
                           values[rows, (best + 1) % n])
    curvature = left - 2 * centre + right
    offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-12),
                         torch.zeros_like(centre))
    return best.to(values.dtype) + offset


def estimate_shift(images, references, max_shift, band):
    """Shift (n, 2) of each image against its reference by phase correlation
    restricted to the low-pass `band`, searched within `max_shift` pixels."""
    import torch
    box = images.shape[-1]
    cross = torch.fft.fft2(images) * torch.fft.fft2(references).conj()
    cross = cross / (cross.abs() + 1e-12) ** WHITEN * band
    surface = torch.fft.fftshift(torch.fft.ifft2(cross).real, dim=(-2, -1))
    centre = box // 2
    reach = int(max(1, min(np.ceil(max_shift), centre - 2)))
    window = surface[:, centre - reach:centre + reach + 1, centre - reach:centre + reach + 1]
    flat = window.reshape(window.shape[0], -1).argmax(dim=-1)
    size = 2 * reach + 1
    row, col = flat // size, flat % size
    rows = torch.arange(images.shape[0], device=images.device)
    dy = _parabolic(window[rows, (row - 1).clamp(0, size - 1), col], window[rows, row, col],
                    window[rows, (row + 1).clamp(0, size - 1), col])
    dx = _parabolic(window[rows, row, (col - 1).clamp(0, size - 1)], window[rows, row, col],
                    window[rows, row, (col + 1).clamp(0, size - 1)])
    shifts = torch.stack([col - reach + dx, row - reach + dy], -1).to(images.dtype)
    return shifts.clamp(-max_shift, max_shift)


def _parabolic(left, centre, right):
    """Sub-pixel peak offset. The band-limited phase-correlation peak is a
    Gaussian, so the parabola goes through the logarithms."""
    import torch
    floor = centre.abs() * 1e-3 + 1e-12
    left, centre, right = (torch.log(v.clamp(min=0) + floor) for v in (left, centre, right))
    curvature = left - 2 * centre + right
    return torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-12),
                       torch.zeros_like(centre)).clamp(-0.5, 0.5)


def align(images, reference, iterations=3, max_shift=None, cutoff=0.25):
    """Align (n, box, box) tensors to one reference: a first rotation from
    the Fourier amplitudes, then the shift by phase correlation against the
    reference at that rotation; then `iterations - 1` times the rotation from
    polar rings of the particle with its shift undone and the shift again.
    Returns angles, shifts (tensors) and correlations."""
    import torch
    box = images.shape[-1]
    max_shift = box / 8 if max_shift is None else max_shift
    band = lowpass_filter(box, cutoff, images.device)
    filtered = apply_filter(images, band)
    reference = apply_filter(reference[None], band)[0]
    grid, radii = polar_grid(box, device=images.device)
    n = images.shape[0]
    angles = initial_rotation(filtered, reference, grid, radii, max_shift, band)
    shifts = torch.zeros(n, 2, device=images.device)
    for iteration in range(max(1, iterations)):
        if iteration:
            centred = transform(filtered, torch.zeros_like(angles), -shifts)
            angles = estimate_rotation(centred, reference, grid, radii)
        rotated = transform(reference.expand(n, -1, -1), angles, torch.zeros_like(shifts))
        shifts = estimate_shift(filtered, rotated, max_shift, band)
    aligned = untransform(filtered, angles, shifts)
    return angles, shifts, pearson(aligned, reference, circular_mask(box, device=images.device))


def pearson(images, reference, mask):
    """Correlation coefficient of each image with the reference inside the mask."""
    a = images[:, mask]
    b = reference[mask]
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean()
    return (a @ b) / (a.norm(dim=1) * b.norm() + 1e-12)


def circular_mask(box, radius=None, device=None):
    import torch
    radius = box / 2 - 1 if radius is None else radius
    axis = torch.arange(box, device=device, dtype=torch.float32) - (box - 1) / 2
    return axis[:, None] ** 2 + axis[None, :] ** 2 <= radius ** 2


def class_average(read_batch, members, initial_reference, iterations=3, max_shift=None,
                  batch_size=512, device=None, cutoff=0.25):
    """Align the members of one class to a reference and average them.

    read_batch(indices) returns float32 images (m, box, box) of the stack;
    members are stack indices. Each round aligns all members to the current
    reference batch by batch and builds the next reference as the average
    weighted by the correlation (negative correlations count zero). Returns
    the final average and the Alignment of the members.
    """
    import torch
    reference = torch.as_tensor(initial_reference, dtype=torch.float32, device=device)
    members = np.asarray(members)
    for _ in range(max(1, iterations)):
        total = torch.zeros_like(reference)
        weight_sum = 0.0
        results = []
        for start in range(0, len(members), batch_size):
            images = torch.as_tensor(read_batch(members[start:start + batch_size]),
                                     dtype=torch.float32, device=device)
            angles, shifts, correlations = align(images, reference, 2, max_shift, cutoff)
            weights = correlations.clamp(min=0)
            total += (untransform(images, angles, shifts) * weights[:, None, None]).sum(0)
            weight_sum += float(weights.sum())
            results.append((angles, shifts, correlations))
        reference = total / weight_sum if weight_sum > 0 else reference
    angles, shifts, correlations = (torch.cat(parts).cpu().numpy() for parts in zip(*results))
    return reference.cpu().numpy(), Alignment(angles % 360, shifts, correlations)


def weighted_average(images, angles, shifts, weights, device=None):
    """Sum of the particles brought onto the reference, weighted, divided by
    the sum of the weights; inputs are arrays for one batch."""
    import torch
    images = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device)
    weights = torch.as_tensor(np.asarray(weights, dtype=np.float32), device=device)
    aligned = untransform(images, torch.as_tensor(np.asarray(angles, dtype=np.float32)),
                          torch.as_tensor(np.asarray(shifts, dtype=np.float32)))
    total = (aligned * weights[:, None, None]).sum(0)
    return (total / weights.sum().clamp(min=1e-12)).cpu().numpy()
