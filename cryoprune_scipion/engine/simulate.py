"""Simulated cryo-EM data with a known answer: particle positions, views,
junk types and SNR.

Physical model: a molecule is a set of Gaussian pseudo-atoms (a 3D density),
so its projection along any direction is exactly a sum of 2D Gaussians. The
projection is convolved with a CTF (defocus, spherical aberration, amplitude
contrast; positive defocus is underfocus, particles come out dark) and
Gaussian noise is added at a stated SNR, the ratio of the signal variance to
the noise variance.
"""
import dataclasses

import numpy as np

from .io import InputError


@dataclasses.dataclass
class Molecule:
    """Pseudo-atom centres (N, 3) in Angstrom and their Gaussian width."""
    atoms: np.ndarray
    sigma: float = 6.0
    name: str = "molecule"

    @property
    def radius(self):
        return float(np.linalg.norm(self.atoms, axis=1).max() + 2 * self.sigma)


def barrel(radius=45.0, height=70.0, symmetry=6, sigma=8.0):
    """A hollow barrel along z: rings in top views, two bars in side views
    (views as different as the top and side views of the picking paper)."""
    atoms = []
    for z in np.linspace(-height / 2, height / 2, 4):
        for k in range(symmetry):
            angle = 2 * np.pi * (k + 0.5 * (z > 0)) / symmetry
            atoms.append((radius * np.cos(angle), radius * np.sin(angle), z))
    return Molecule(np.array(atoms), sigma, "barrel")


def asymmetric_tetramer(size=40.0, sigma=9.0):
    """Four lobes of different sizes on a bent arm: each direction of view
    gives a different projection (for 2D classification)."""
    lobes = np.array([(0, 0, 0), (size, 0, 0), (size * 1.3, size * 0.9, 0),
                      (size * 0.2, size * 0.6, size * 0.8)], dtype=float)
    weights = [1, 2, 3, 4]
    atoms = []
    rng = np.random.default_rng(7)
    for lobe, count in zip(lobes, weights):
        atoms.extend(lobe + rng.normal(scale=sigma * 0.6, size=(count * 3, 3)))
    atoms = np.array(atoms)
    return Molecule(atoms - atoms.mean(axis=0), sigma, "tetramer")


def rotation_matrix(rot, tilt, psi):
    """ZYZ Euler angles in degrees (the RELION/Scipion convention)."""
    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    def ry(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    rot, tilt, psi = np.radians([rot, tilt, psi])
    return rz(psi) @ ry(tilt) @ rz(rot)


def project(molecule, rotation, box, pixel_size, shift=(0.0, 0.0)):
    """Projection (box, box) of the rotated molecule along z; shift in pixels
    (x, y). Integrated density, so the image does not depend on the box."""
    atoms = molecule.atoms @ rotation.T / pixel_size
    sigma = molecule.sigma / pixel_size
    centre = (box - 1) / 2
    axis = np.arange(box)
    gx = np.exp(-((axis[None, :] - centre - shift[0] - atoms[:, :1]) ** 2) / (2 * sigma ** 2))
    gy = np.exp(-((axis[None, :] - centre - shift[1] - atoms[:, 1:2]) ** 2) / (2 * sigma ** 2))
    return (gy.T @ gx).astype(np.float32)


def ctf(shape, pixel_size, defocus_um=1.5, voltage_kv=300.0, cs_mm=2.7,
        amplitude_contrast=0.1):
    """The CTF on the unshifted FFT grid of an image of `shape`."""
    ky = np.fft.fftfreq(shape[0], d=pixel_size)
    kx = np.fft.fftfreq(shape[1], d=pixel_size)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    return ctf_from_defocus(k2, defocus_um * 1e4, voltage_kv, cs_mm, amplitude_contrast)


def ctf_from_defocus(k2, defocus, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1):
    """CTF values at squared spatial frequencies `k2` (1/A^2) for a defocus in
    Angstrom (a scalar, or an array as large as k2 for astigmatism)."""
    wavelength = 12.2643247 / np.sqrt(voltage_kv * 1e3 * (1 + voltage_kv * 0.978466e-3))
    cs = cs_mm * 1e7
    chi = np.pi * wavelength * defocus * k2 - 0.5 * np.pi * cs * wavelength ** 3 * k2 ** 2
    return -(np.sqrt(1 - amplitude_contrast ** 2) * np.sin(chi)
             + amplitude_contrast * np.cos(chi))


def apply_ctf(image, transfer):
    return np.real(np.fft.ifft2(np.fft.fft2(image) * transfer)).astype(np.float32)


def add_noise(signal, snr, rng, signal_variance=None):
    """Gaussian noise of variance signal_variance / snr (the variance of
    `signal` when not given)."""
    _require_positive(snr=snr)
    variance = float(np.var(signal)) if signal_variance is None else signal_variance
    noise = rng.normal(scale=np.sqrt(variance / snr), size=signal.shape)
    return (signal + noise).astype(np.float32)


def _require_positive(**values):
    for name, value in values.items():
        if not value > 0:  # NaN too
            raise InputError("simulation: %s must be above 0, found %s" % (name, value))


VIEWS = {"top": 0.0, "side": 90.0}  # tilt of the barrel axis


@dataclasses.dataclass
class SimulatedMicrograph:
    image: np.ndarray
    particles: list   # dicts: x, y (pixels), view
    junk: list        # dicts: x, y, kind (ice, carbon, aggregate)
    pixel_size: float
    defocus_um: float


def simulate_micrograph(shape=(1024, 1024), n_particles=40, pixel_size=3.0, snr=0.5,
                        defocus_um=1.5, molecule=None, views=("top", "side"),
                        junk=(), seed=0):
    """A micrograph with particles at known centres and views, and optional
    junk: "ice" (dense round blobs), "carbon" (a half-plane of film with an
    edge) and "aggregate" (clumps of overlapping particles). The SNR is that
    of the particle signal over the noise, measured inside the particles."""
    _require_positive(pixel_size=pixel_size)
    rng = np.random.default_rng(seed)
    molecule = molecule or barrel()
    diameter = 2 * molecule.radius / pixel_size
    if min(shape) <= 2 * diameter:  # particles are placed a diameter from the edge
        raise InputError("a %d x %d px micrograph is too small for particles %.0f px "
                         "across at %g A/px; give more than %d px a side"
                         % (shape[1], shape[0], diameter, pixel_size, 2 * diameter))
    box = int(np.ceil(diameter * 1.5)) | 1
    density = np.zeros(shape, dtype=np.float32)
    junk_items = [{"kind": kind, **_place(rng, shape, diameter)} for kind in junk]
    carbon = [j for j in junk_items if j["kind"] == "carbon"]
    occupied = [(j["x"], j["y"]) for j in junk_items if j["kind"] != "carbon"]
    particles = []
    for _ in range(n_particles * 50):
        if len(particles) == n_particles:
            break
        position = _place(rng, shape, diameter)
        if any(np.hypot(position["x"] - x, position["y"] - y) < 1.6 * diameter
               for x, y in occupied) or _on_carbon(position, carbon):
            continue
        view = views[len(particles) % len(views)]
        rotation = rotation_matrix(rng.uniform(0, 360), VIEWS[view] + rng.normal(0, 5),
                                   rng.uniform(0, 360))
        _paste(density, project(molecule, rotation, box, pixel_size), position)
        occupied.append((position["x"], position["y"]))
        particles.append({**position, "view": view})
    signal_variance = _particle_signal_variance(density, defocus_um, pixel_size)
    for item in junk_items:
        _add_junk(density, item, molecule, box, pixel_size, diameter, rng)
    transfer = ctf(shape, pixel_size, defocus_um)
    image = add_noise(apply_ctf(density, transfer), snr, rng, signal_variance)
    return SimulatedMicrograph(image, particles, junk_items, pixel_size, defocus_um)


def _place(rng, shape, diameter):
    margin = diameter
    return {"x": float(rng.uniform(margin, shape[1] - margin)),
            "y": float(rng.uniform(margin, shape[0] - margin))}


def _on_carbon(position, carbon):
    """The film covers the micrograph left of its edge."""
    return any(position["x"] < c["x"] for c in carbon)


def _paste(density, patch, position, weight=1.0):
    """Add `patch` centred at position (x, y) rounded to the nearest pixel."""
    box = patch.shape[0]
    top = int(round(position["y"])) - box // 2
    left = int(round(position["x"])) - box // 2
    rows = slice(max(top, 0), min(top + box, density.shape[0]))
    cols = slice(max(left, 0), min(left + box, density.shape[1]))
    density[rows, cols] += weight * patch[rows.start - top:rows.stop - top,
                                          cols.start - left:cols.stop - left]


def _particle_signal_variance(density, defocus_um, pixel_size):
    filtered = apply_ctf(density, ctf(density.shape, pixel_size, defocus_um))
    inside = density > 0.05 * density.max() if density.max() > 0 else density >= 0
    return float(np.var(filtered[inside])) or 1.0


def _add_junk(density, item, molecule, box, pixel_size, diameter, rng):
    peak = float(project(molecule, np.eye(3), box, pixel_size).max())
    if item["kind"] == "ice":
        radius = diameter * rng.uniform(0.4, 0.9)
        yy, xx = np.ogrid[:density.shape[0], :density.shape[1]]
        blob = np.exp(-((xx - item["x"]) ** 2 + (yy - item["y"]) ** 2) / (2 * radius ** 2)) ** 4
        density += (3.0 * peak * blob).astype(np.float32)
    elif item["kind"] == "carbon":
        columns = np.arange(density.shape[1])
        edge = 1 / (1 + np.exp((columns - item["x"]) / 1.5))
        density += (0.8 * peak * edge[None, :]).astype(np.float32)
    elif item["kind"] == "aggregate":
        for _ in range(rng.integers(4, 8)):
            offset = rng.normal(scale=diameter * 0.35, size=2)
            rotation = rotation_matrix(*rng.uniform(0, 360, size=3))
            _paste(density, project(molecule, rotation, box, pixel_size),
                   {"x": item["x"] + offset[0], "y": item["y"] + offset[1]})
    else:
        raise ValueError("unknown junk kind %r" % item["kind"])


def simulate_particle_stack(molecule, directions, n_particles, box=64, pixel_size=3.0,
                            snr=0.1, max_shift=3.0, defocus_range=(1.0, 2.5), seed=0):
    """Particles of known view: each image is the projection along one of
    `directions` ((rot, tilt) pairs in degrees) with a random in-plane
    rotation and shift, its own CTF and noise at `snr`.

    Returns images (n, box, box), view labels, in-plane angles (degrees),
    shifts (n, 2) and defoci (micrometres).
    """
    _require_positive(pixel_size=pixel_size, box=box)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(directions), size=n_particles)
    angles = rng.uniform(0, 360, size=n_particles)
    shifts = rng.uniform(-max_shift, max_shift, size=(n_particles, 2))
    defoci = rng.uniform(*defocus_range, size=n_particles)
    clean = np.empty((n_particles, box, box), dtype=np.float32)
    for i in range(n_particles):
        rot, tilt = directions[labels[i]]
        rotation = rotation_matrix(rot, tilt, angles[i])
        projection = project(molecule, rotation, box, pixel_size, shifts[i])
        clean[i] = apply_ctf(projection, ctf((box, box), pixel_size, defoci[i]))
    signal_variance = float(np.var(clean))
    images = np.stack([add_noise(c, snr, rng, signal_variance) for c in clean])
    return images, labels, angles, shifts, defoci
