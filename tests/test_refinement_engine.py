"""Engine tests of the refinement after the contrastive start (multi-reference
alignment, reseeding) and of the class scores, on simulated particles whose
views are known."""
import types

import numpy as np
import pytest

from cryoprune_scipion.engine import ranking, refine, simulate
from cryoprune_scipion.engine.io import InputError
from cryoprune_scipion.engine.metrics import clustering_accuracy

BOX = 32
PIXEL_SIZE = 4.0
DIRECTIONS = [(0.0, 0.0), (40.0, 60.0), (200.0, 90.0)]


def views_stack(n, snr, seed=0):
    """Normalised particles of three views (random in-plane angle and shift)."""
    images, labels, _, _, _ = simulate.simulate_particle_stack(
        simulate.asymmetric_tetramer(), DIRECTIONS, n, box=BOX, pixel_size=PIXEL_SIZE,
        snr=snr, max_shift=1.5, defocus_range=(0.5, 0.5), seed=seed)
    images = images - images.mean(axis=(1, 2), keepdims=True)
    return (images / images.std(axis=(1, 2), keepdims=True)).astype(np.float32), labels


def settings(**changes):
    values = dict(passes=4, angle_step=10.0, search_size=BOX, batch=64)
    values.update(changes)
    return refine.RefinementSettings(**values)


def test_window_correlation_equals_the_fft_surface():
    import torch
    generator = torch.Generator().manual_seed(0)
    references = torch.randn(2, 24, 24, generator=generator)
    particles = torch.randn(3, 24, 24, generator=generator)
    search = refine.Search(references, 30.0, 3.0)
    spectra = torch.fft.rfft2(refine._normalise(particles, search.mask))
    surface = torch.fft.irfft2(spectra[:, None] * search.spectra[None], s=(24, 24))
    rows = search.offsets % 24
    expected = surface[..., rows, :][..., rows].reshape(search.correlations(particles).shape)
    assert torch.allclose(search.correlations(particles), expected, atol=1e-6)


def test_refinement_raises_accuracy_at_low_snr():
    images, truth = views_stack(240, snr=0.1)
    rng = np.random.default_rng(1)
    start = truth + 1
    wrong = rng.random(len(start)) < 0.45  # a poor start: 45 % scrambled
    start[wrong] = rng.integers(1, 4, wrong.sum())
    before = clustering_accuracy(truth, start)
    refined = refine.refine(images, start, 3, settings(mode="hard"))
    after = clustering_accuracy(truth, refined.labels)
    assert after >= before + 0.15 and after >= 0.85
    assert refined.averages.shape == (3, BOX, BOX)
    assert refined.history and {"changed", "mean_correlation", "seconds"} <= set(
        refined.history[0])
    soft = refine.refine(images, start, 3, settings(mode="soft"))
    assert clustering_accuracy(truth, soft.labels) >= before + 0.15


def centre_of_mass(image):
    energy = image ** 2
    rows, cols = np.indices(image.shape) - (image.shape[-1] - 1) / 2
    return np.array([(energy * cols).sum(), (energy * rows).sum()]) / energy.sum()


def test_an_off_centre_average_is_centred():
    import torch
    image = np.zeros((2, 64, 64), dtype=np.float32)
    image[:, 40:46, 20:26] = 1.0  # centre 9 px left of and 11 px below the box centre
    centred = refine.centred(torch.as_tensor(image), 32).numpy()
    for average in centred:
        assert np.hypot(*centre_of_mass(average)) < 0.25
    assert np.isclose(centred.sum(), image.sum(), rtol=0.02)


def test_averages_stay_centred_over_many_passes():
    images, truth = views_stack(240, snr=0.1)
    refined = refine.refine(images, truth + 1, 3, settings(passes=12, tolerance=0.0))
    assert len(refined.history) == 12
    assert clustering_accuracy(truth, refined.labels) >= 0.9  # 0.91 after one pass
    assert np.abs(refined.shifts).mean() < 1.5  # the particles are shifted by up to 1.5 px
    for average in refined.averages:  # uncentred, the seeds' frames: 0.9 to 1.9 px off
        assert np.hypot(*centre_of_mass(average)) < 0.25


def test_reseeding_fills_an_empty_class():
    images, truth = views_stack(180, snr=1.0, seed=2)
    start = np.where(truth == 2, 1, truth + 1)  # views 1 and 3 merged, class 3 empty
    start[truth == 1] = 2
    assert np.bincount(start, minlength=4)[3] == 0
    refined = refine.refine(images, start, 3, settings(passes=5))
    sizes = np.bincount(refined.labels, minlength=4)[1:]
    assert sizes.min() >= 30
    assert any(h["reseeded"] for h in refined.history)
    assert clustering_accuracy(truth, refined.labels) >= 0.9


def test_duplicate_classes_are_merged_and_the_mixed_class_split():
    import torch
    images, truth = views_stack(150, snr=3.0, seed=4)
    # View 1 split over classes 1 and 2; views 2 and 3 share class 3.
    start = np.where(truth == 0, 1 + np.arange(len(truth)) % 2, 3)
    assert clustering_accuracy(truth, start) < 0.8
    refined = refine.refine(images, start, 3, settings(passes=3, angle_step=15.0))
    assert refined.history[0]["merged"] == [(1, 2, 3)]
    assert clustering_accuracy(truth, refined.labels) >= 0.95
    similarity = refine.average_similarity(torch.as_tensor(refined.averages), settings())
    threshold = refine.RefinementSettings().duplicate_correlation
    assert similarity[np.triu_indices(3, 1)].max() < threshold  # no duplicates left


def test_a_last_pass_that_merges_is_followed_by_clean_up_passes():
    images, truth = views_stack(150, snr=3.0, seed=4)
    start = np.where(truth == 0, 1 + np.arange(len(truth)) % 2, 3)  # as above
    alone = refine.refine(images, start, 3, settings(passes=1, angle_step=15.0,
                                                     cleanup_passes=0))
    assert len(alone.history) == 1 and not alone.history[0]["merged"]
    assert clustering_accuracy(truth, alone.labels) < 0.8  # one view still in two classes
    refined = refine.refine(images, start, 3, settings(passes=1, angle_step=15.0))
    assert refined.history[0]["merged"] == [(1, 2, 3)]
    assert 2 <= len(refined.history) <= 1 + refine.RefinementSettings().cleanup_passes
    assert not (refined.history[-1]["merged"] or refined.history[-1]["reseeded"])
    assert clustering_accuracy(truth, refined.labels) >= 0.95


def test_noise_corrected_test_merges_noisy_averages_of_one_view_only():
    import torch
    rng = np.random.default_rng(0)
    views = [simulate.project(simulate.asymmetric_tetramer(), simulate.rotation_matrix(*d, 0),
                              BOX, PIXEL_SIZE) for d in DIRECTIONS[:2]]
    # Classes 1 and 2: 40 aligned noisy images of view 1 each; class 3: view 2.
    groups = [np.stack([simulate.add_noise(v, 0.05, rng) for _ in range(40)])
              for v in (views[0], views[0], views[1])]
    halves = torch.as_tensor(np.stack([[g[0::2].sum(0) for g in groups],
                                       [g[1::2].sum(0) for g in groups]]), dtype=torch.float32)
    averages = halves.sum(0) / 40
    reliability = refine.half_set_reliability(halves, BOX)
    assert np.all((reliability > 0.3) & (reliability < 0.95))  # noisy averages

    def similarity(noise):
        return refine.duplicate_similarity(averages, reliability,
                                           settings(duplicate_noise=noise))
    threshold = refine.RefinementSettings().duplicate_correlation
    fixed, corrected = similarity(False), similarity(True)
    assert fixed[0, 1] < threshold <= corrected[0, 1]  # one view: only the new test merges
    assert corrected[0, 2] < threshold and corrected[1, 2] < threshold  # two views: kept


def test_frc_ranks_a_clean_class_above_a_noise_class():
    rng = np.random.default_rng(3)
    clean = simulate.project(simulate.asymmetric_tetramer(),
                             simulate.rotation_matrix(0, 60, 0), BOX, PIXEL_SIZE)
    signal = np.stack([simulate.add_noise(clean, 0.5, rng) for _ in range(80)])
    noise = rng.normal(size=(80, BOX, BOX)).astype(np.float32)
    stack = np.concatenate([noise, signal])  # the noise class first
    labels = np.repeat([1, 2], 80)
    n = len(stack)
    result = types.SimpleNamespace(labels=labels, angles=np.zeros(n), shifts=np.zeros((n, 2)),
                                   weights=np.ones(n), averages=np.zeros((2, BOX, BOX)))
    ranked = ranking.rank_classes(result, [stack], 2, order="resolution")
    assert ranked.scores[0].resolution < ranked.scores[1].resolution
    assert ranked.scores[0].resolution < 6  # px per cycle: detail of the clean class
    assert np.all(ranked.labels[80:] == 1)  # the clean class is now class 1
    by_size = ranking.rank_classes(result, [stack], 2, order="size")
    assert [s.particles for s in by_size.scores] == [80, 80]
    with pytest.raises(InputError):
        ranking.rank_classes(result, [stack], 2, order="colour")


def test_bad_refinement_settings_are_input_errors():
    with pytest.raises(InputError, match="mode"):
        settings(mode="fuzzy").check()
    with pytest.raises(InputError, match="angle step"):
        settings(angle_step=120).check()
