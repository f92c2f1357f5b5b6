"""Engine tests of the contrastive 2D classification: loss, Fourier-space
alignment, averaging, k-means, metrics, bad input and the classify2d CLI on
simulated particles whose views are known."""
import csv
import json
import logging
import os

import mrcfile
import numpy as np
import pytest
import torch

from cryoprune_scipion.cli import main
from cryoprune_scipion.engine import alignment, clustering, contrastive, simulate
from cryoprune_scipion.engine.io import InputError, write_stack
from cryoprune_scipion.engine.windows import downsample_windows
from cryoprune_scipion.engine.metrics import (adjusted_rand_index, clustering_accuracy,
                                              normalized_mutual_information)

BOX = 64
PIXEL_SIZE = 3.0
TETRAMER = simulate.asymmetric_tetramer()


def projection(angle=0.0, shift=(0.0, 0.0), direction=(30.0, 60.0)):
    rotation = simulate.rotation_matrix(direction[0], direction[1], angle)
    return simulate.project(TETRAMER, rotation, BOX, PIXEL_SIZE, shift)


def test_nt_xent_is_lower_for_matching_pairs():
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(64, 32, generator=generator)
    matching = z1 + 0.1 * torch.randn(64, 32, generator=generator)
    unrelated = torch.randn(64, 32, generator=generator)
    for temperature in (0.1, 0.5):
        assert (contrastive.nt_xent(z1, matching, temperature)
                < contrastive.nt_xent(z1, unrelated, temperature) - 1.0)


def test_fourier_alignment_recovers_rotation_and_shift():
    rng = np.random.default_rng(3)
    angles = rng.uniform(0, 360, 12)
    shifts = rng.uniform(-3, 3, (12, 2))
    images = torch.tensor(np.stack([projection(a, s) for a, s in zip(angles, shifts)]))
    found_angles, found_shifts, correlations = alignment.align(
        images, torch.tensor(projection()), iterations=4, cutoff=0.15)
    angle_error = (found_angles.numpy() - angles + 180) % 360 - 180
    assert np.abs(angle_error).max() < 1.0
    assert np.abs(found_shifts.numpy() - shifts).max() < 1.0
    assert correlations.min() > 0.98


def test_transform_then_untransform_is_identity():
    image = torch.tensor(projection())[None]
    angle, shift = torch.tensor([37.0]), torch.tensor([[2.0, -1.5]])
    back = alignment.untransform(alignment.transform(image, angle, shift), angle, shift)
    mask = alignment.circular_mask(BOX, BOX / 2 - 4)
    assert alignment.pearson(back, image[0], mask)[0] > 0.995


def test_averaging_aligned_copies_improves_snr_by_n():
    clean = projection()
    rng = np.random.default_rng(0)
    n, snr = 64, 0.2
    copies = np.stack([simulate.add_noise(clean, snr, rng) for _ in range(n)])
    average = alignment.weighted_average(copies, np.zeros(n), np.zeros((n, 2)), np.ones(n))
    measured = np.var(clean) / np.var(average - clean)
    assert 0.75 * n * snr < measured < 1.3 * n * snr


def test_class_average_of_rotated_noisy_copies_matches_the_projection():
    rng = np.random.default_rng(1)
    n = 150
    angles = rng.uniform(0, 360, n)
    shifts = rng.uniform(-2, 2, (n, 2))
    clean = np.stack([projection(a, s) for a, s in zip(angles, shifts)])
    noisy = np.stack([simulate.add_noise(c, 0.5, rng) for c in clean])
    average, result = alignment.class_average(lambda i: noisy[i], np.arange(n), noisy[0], 3)
    # The average sits in the frame of particle 0; bring it to the clean view.
    a, s, _ = alignment.align(torch.tensor(average)[None], torch.tensor(projection()),
                              iterations=4)
    aligned = alignment.untransform(torch.tensor(average)[None], a, s)
    mask = alignment.circular_mask(BOX)
    assert alignment.pearson(aligned, torch.tensor(projection()), mask)[0] > 0.9
    assert result.correlations.shape == (n,) and result.shifts.shape == (n, 2)
    # Relative angles agree with the truth (up to the frame of the average).
    relative = (result.angles - angles + 180) % 360 - 180
    spread = (relative - np.median(relative) + 180) % 360 - 180
    assert np.mean(np.abs(spread) < 10) > 0.9


def test_kmeans_separates_clusters_and_sorts_classes_by_size():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 5
    sizes = [30, 80, 50]
    features = np.concatenate([c + rng.normal(scale=0.3, size=(s, 4))
                               for c, s in zip(centres, sizes)])
    truth = np.repeat([0, 1, 2], sizes)
    labels, class_centres = clustering.kmeans(features, 3, seed=1)
    assert clustering_accuracy(truth, labels) == 1.0
    assert list(np.bincount(labels)[1:]) == [80, 50, 30]
    assert class_centres.shape == (3, 4)
    assert np.allclose(np.linalg.norm(clustering.normalise(features).numpy(), axis=1), 1)


def test_kmeans_refuses_more_classes_than_particles():
    with pytest.raises(InputError, match="only 5 particles"):
        clustering.kmeans(np.random.default_rng(0).normal(size=(5, 3)), 6)


def test_clustering_metrics_on_known_partitions():
    truth = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(truth, [7, 7, 3, 3, 9, 9]) == 1.0
    assert normalized_mutual_information(truth, [7, 7, 3, 3, 9, 9]) == pytest.approx(1.0)
    assert adjusted_rand_index(truth, [7, 7, 3, 3, 9, 9]) == pytest.approx(1.0)
    assert clustering_accuracy(truth, [5, 5, 3, 3, 3, 4]) == pytest.approx(5 / 6)
    # Reference values (scikit-learn) of this pair.
    assert normalized_mutual_information(truth, [5, 5, 3, 3, 3, 4]) == pytest.approx(
        0.7397, abs=1e-4)
    assert adjusted_rand_index(truth, [5, 5, 3, 3, 3, 4]) == pytest.approx(0.4444, abs=1e-4)


def test_astigmatic_ctf_matches_the_simulation_and_phase_flip_restores_contrast():
    transfer = contrastive.ctf_astigmatic(BOX, PIXEL_SIZE, [15000.0], [15000.0], [0.0])[0]
    assert np.allclose(transfer, simulate.ctf((BOX, BOX), PIXEL_SIZE, 1.5), atol=1e-6)
    clean = projection()
    image = simulate.apply_ctf(clean, simulate.ctf((BOX, BOX), PIXEL_SIZE, 2.0))
    ctf = contrastive.CtfParameters(np.array([20000.0]), np.array([20000.0]),
                                    np.array([0.0]), PIXEL_SIZE)
    flipped = contrastive.phase_flip(image[None].astype(float), ctf, [0])[0]
    assert np.corrcoef(clean.ravel(), image.ravel())[0, 1] < 0
    assert np.corrcoef(clean.ravel(), flipped.ravel())[0, 1] > 0.5


def test_augment_keeps_shape_and_normalises():
    images = torch.tensor(np.stack([projection(a) for a in (0, 90)]))
    views = contrastive.augment(images, contrastive.Augmentations(flip=True),
                                torch.Generator().manual_seed(0))
    assert views.shape == images.shape and torch.isfinite(views).all()
    assert not torch.allclose(views[0], contrastive.standardise(images[:1])[0])


@pytest.fixture
def stack_dir(tmp_path):
    return tmp_path


def write(path, images):
    write_stack(str(path), np.asarray(images, dtype=np.float32), PIXEL_SIZE)
    return str(path)


def test_working_stack_refuses_nan_and_constant_images(stack_dir):
    images = np.random.default_rng(0).normal(size=(6, 32, 32)).astype(np.float32)
    images[4, 3, 3] = np.nan
    stacks = contrastive.open_stacks([write(stack_dir / "nan.mrcs", images)])
    with pytest.raises(InputError, match="particle 4 holds NaN"):
        contrastive.make_working_stack(stacks, 32, str(stack_dir / "w.npy"))
    images[4] = 0.0
    images[2] = 7.0
    stacks = contrastive.open_stacks([write(stack_dir / "flat.mrcs", images)])
    with pytest.raises(InputError, match="particle 2 is a constant image"):
        contrastive.make_working_stack(stacks, 32, str(stack_dir / "w.npy"))


def test_bad_stacks_are_named(stack_dir):
    small = write(stack_dir / "small.mrcs", np.ones((2, 32, 32)))
    large = write(stack_dir / "large.mrcs", np.ones((2, 48, 48)))
    with pytest.raises(InputError, match="one box size"):
        contrastive.open_stacks([small, large])
    broken = stack_dir / "broken.mrcs"
    broken.write_bytes(b"not an MRC file at all" * 10)
    with pytest.raises(InputError, match="broken.mrcs: cannot read"):
        contrastive.open_stacks([str(broken)])


def test_fourier_crop_keeps_low_frequencies():
    image = projection()[None].astype(np.float64)
    small = downsample_windows(image, 32)
    assert small.shape == (1, 32, 32)
    assert np.isclose(small.sum() * 4, image.sum(), rtol=1e-4)


def simulated_two_view_stack(folder, n=96, snr=2.0):
    """Top and side views of a barrel: easy classes for a short training."""
    barrel = simulate.barrel(radius=40.0, height=60.0, symmetry=5)
    images, labels, _, _, defoci = simulate.simulate_particle_stack(
        barrel, [(0.0, 0.0), (0.0, 90.0)], n, box=48, pixel_size=3.0, snr=snr,
        max_shift=2.0, seed=4)
    path = write(os.path.join(folder, "particles.mrcs"), images)
    with open(os.path.join(folder, "ctf.csv"), "w") as f:
        f.write("index,defocus_u,defocus_v,defocus_angle\n")
        f.writelines("%d,%.1f,%.1f,0\n" % (i, d * 1e4, d * 1e4) for i, d in enumerate(defoci))
    return path, labels


def test_classify2d_cli_contract_and_encoder_reuse(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    stack, labels = simulated_two_view_stack(str(tmp_path))
    out = str(tmp_path / "out")
    assert main(["classify2d", "--particles", stack, "--classes", "2", "--out", out,
                 "--epochs", "3", "--batch", "32", "--working-size", "48",
                 "--feature-rotations", "4", "--ctf", str(tmp_path / "ctf.csv"),
                 "--device", "cpu"]) == 0
    with open(os.path.join(out, "classes.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(len(labels)))
    predicted = np.array([int(r["class"]) for r in rows])
    assert set(predicted) == {1, 2}
    assert np.sum(predicted == 1) >= np.sum(predicted == 2)
    assert clustering_accuracy(labels, predicted) >= 0.9
    with mrcfile.open(os.path.join(out, "averages.mrcs")) as mrc:
        assert mrc.data.shape == (2, 48, 48)
        assert np.all(np.isfinite(mrc.data))
    with open(os.path.join(out, "alignment.csv")) as f:
        alignment_rows = list(csv.DictReader(f))
    assert list(alignment_rows[0]) == ["index", "class", "angle", "shift_x", "shift_y", "weight"]
    assert [r["class"] for r in alignment_rows] == [r["class"] for r in rows]
    assert all(0 <= float(r["angle"]) < 360 for r in alignment_rows)
    with open(os.path.join(out, "model.json")) as f:
        metadata = json.load(f)
    assert metadata["working_size"] == 48 and metadata["phase_flipped"]
    assert not os.path.exists(os.path.join(out, "working-stack.npy"))
    assert "epoch 3/3" in caplog.text  # progress per epoch

    again = str(tmp_path / "again")
    assert main(["classify2d", "--particles", stack, "--classes", "2", "--out", again,
                 "--epochs", "0", "--initial-encoder", os.path.join(out, "encoder.pt"),
                 "--feature-rotations", "4", "--ctf", str(tmp_path / "ctf.csv"),
                 "--device", "cpu"]) == 0
    with open(os.path.join(again, "classes.csv")) as f:
        reused = np.array([int(r["class"]) for r in csv.DictReader(f)])
    assert clustering_accuracy(labels, reused) >= 0.9


def test_classify2d_cli_bad_input_exits_with_a_message(tmp_path, capsys):
    stack, _ = simulated_two_view_stack(str(tmp_path), n=8)
    assert main(["classify2d", "--particles", stack, "--classes", "9",
                 "--out", str(tmp_path / "out")]) == 2
    assert "only 8" in capsys.readouterr().err
    assert main(["classify2d", "--particles", str(tmp_path / "missing.mrcs"),
                 "--classes", "2", "--out", str(tmp_path / "out")]) == 2
    assert "missing.mrcs: particle stack not found" in capsys.readouterr().err
