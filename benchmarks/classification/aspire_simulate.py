"""A particle stack of known views simulated by ASPIRE, the independent
simulator of the classification benchmark (run with the interpreter of the
ASPIRE venv, see requirements-aspire.txt):

    python aspire_simulate.py OUT.npz SNR N VIEWS SEED PIXEL_SIZE

The molecule is ASPIRE's synthetic asymmetric volume (64 Gaussian blobs,
not the engine's tetramer), seen from VIEWS directions of the upper
hemisphere (a Fibonacci spiral; a direction and its opposite would give
mirror images) with random in-plane angles; ASPIRE's own defaults for
everything else: its offsets, its random amplitudes, its radial CTF
(200 kV, Cs 2.26 mm, amplitude contrast 0.07) at 7 defoci from 1.0 to
2.5 um, white noise at SNR from the clean images' power.
Writes: images (n, 64, 64), labels (n,), defocus (n, Angstrom), the
microscope values, clean (VIEWS, 64, 64): the projection of each view
without CTF, offset or amplitude, and ctf_grid (7, 64, 64): ASPIRE's CTF
at each of DEFOCI on the centred frequency grid, for the caller to check
its own CTF convention against.
"""
import sys

import numpy as np
from aspire.noise import WhiteNoiseAdder
from aspire.operators import RadialCTFFilter
from aspire.source import Simulation
from aspire.volume import AsymmetricVolume

BOX = 64
VOLTAGE, CS, AMPLITUDE_CONTRAST = 200.0, 2.26, 0.07
DEFOCI = np.linspace(1.0e4, 2.5e4, 7)


def view_angles(views):
    """(views, 2) ZYZ Euler angles (radians): rotation and tilt of directions
    on the upper hemisphere; ASPIRE's third angle turns the image in plane."""
    i = np.arange(views) + 0.5
    tilt = np.arccos(1 - i / views)
    rot = (np.pi * (1 + 5 ** 0.5) * i) % (2 * np.pi)
    return np.stack([rot, tilt], 1)


def main(out, snr, n, views, seed, pixel_size):
    rng = np.random.default_rng(seed)
    volume = AsymmetricVolume(L=BOX, C=1, K=64, pixel_size=pixel_size, seed=seed).generate()
    labels = rng.integers(0, views, n)
    directions = view_angles(views)
    angles = np.column_stack([directions[labels], rng.uniform(0, 2 * np.pi, n)])
    filters = [RadialCTFFilter(voltage=VOLTAGE, defocus=d, Cs=CS, alpha=AMPLITUDE_CONTRAST)
               for d in DEFOCI]
    simulation = Simulation(L=BOX, n=n, vols=volume, angles=angles, unique_filters=filters,
                            noise_adder=WhiteNoiseAdder.from_snr(snr, seed=seed),
                            pixel_size=pixel_size, seed=seed)
    images = simulation.images[:].asnumpy()
    plain = Simulation(L=BOX, n=views, vols=volume,
                       angles=np.column_stack([directions, np.zeros(views)]),
                       offsets=np.zeros((views, 2)), amplitudes=np.ones(views),
                       pixel_size=pixel_size, seed=seed)
    clean = plain.clean_images[:].asnumpy()
    ctf_grid = np.stack([f.evaluate_grid(BOX, pixel_size=pixel_size) for f in filters])
    np.savez(out, images=images.astype(np.float32), labels=labels,
             defocus=DEFOCI[simulation.filter_indices], clean=clean.astype(np.float32),
             ctf_grid=ctf_grid, ctf_defoci=DEFOCI,
             voltage=VOLTAGE, spherical_aberration=CS, amplitude_contrast=AMPLITUDE_CONTRAST)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
         int(sys.argv[5]), float(sys.argv[6]))
