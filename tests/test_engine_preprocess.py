"""Micrograph reading and preprocessing."""
import numpy as np
import pytest
from PIL import Image

from cryoprune_scipion.engine.io import InputError, read_micrograph, write_micrograph
from cryoprune_scipion.engine.preprocess import (PreprocessSettings, WorkingGrid,
                                                 interior, preprocess, resize,
                                                 suppress_wavelet_details, to_uint8)


def gaussian_spot(shape, x, y, sigma=4.0):
    rows, columns = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2)).astype(np.float32)


@pytest.mark.parametrize("shape,working_size", [((600, 900), 300), ((900, 600), 512),
                                                ((1000, 1000), 1024), ((733, 1201), 640)])
def test_working_grid_maps_a_spot_back_to_its_micrograph_pixel(shape, working_size):
    x, y = 0.63 * shape[1], 0.41 * shape[0]
    grid = WorkingGrid.for_shape(shape, working_size)
    assert max(grid.working_shape) == working_size
    working = resize(gaussian_spot(shape, x, y, sigma=shape[0] / 60), grid.working_shape)
    rows, columns = np.mgrid[:working.shape[0], :working.shape[1]]
    weights = working / working.sum()
    found_x, found_y = (columns * weights).sum(), (rows * weights).sum()
    back_x, back_y = grid.to_original(found_x, found_y)
    assert abs(back_x - x) < 1.0 and abs(back_y - y) < 1.0


def test_working_grid_round_trip_is_exact():
    grid = WorkingGrid.for_shape((3838, 3710), 1024)
    x, y = np.array([0.0, 100.25, 3709.0]), np.array([0.0, 2000.5, 3837.0])
    back_x, back_y = grid.to_original(*grid.to_working(x, y))
    np.testing.assert_allclose(back_x, x, atol=1e-9)
    np.testing.assert_allclose(back_y, y, atol=1e-9)


def test_wavelet_removal_suppresses_pixel_noise_and_keeps_large_features():
    rng = np.random.default_rng(0)
    clean = gaussian_spot((256, 256), 128, 128, sigma=12)
    noisy = clean + rng.normal(scale=0.2, size=clean.shape).astype(np.float32)
    restored = suppress_wavelet_details(noisy, "db15", 2, "remove")
    assert restored.shape == noisy.shape
    assert np.std(restored - clean) < 0.4 * np.std(noisy - clean)
    correlation = np.corrcoef(restored.ravel(), clean.ravel())[0, 1]
    assert correlation > 0.8 > np.corrcoef(noisy.ravel(), clean.ravel())[0, 1] + 0.2
    soft = suppress_wavelet_details(noisy, "db15", 2, "soft")
    assert np.std(soft - clean) < np.std(noisy - clean)


def test_full_preprocessing_gives_a_normalised_working_image():
    rng = np.random.default_rng(1)
    micrograph = rng.normal(size=(800, 1200)).astype(np.float32)
    micrograph += gaussian_spot((800, 1200), 400, 300)
    image, grid = preprocess(micrograph, PreprocessSettings(working_size=512))
    assert image.shape == grid.working_shape == (341, 512)
    assert abs(image.mean()) < 1e-3 and abs(image.std() - 1) < 1e-3
    picture = to_uint8(image)
    assert picture.dtype == np.uint8 and picture.min() == 0 and picture.max() == 255


def test_every_step_can_be_switched_off():
    micrograph = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    image, grid = preprocess(micrograph, PreprocessSettings(
        working_size=0, wavelet="", wiener_size=0, clahe_tiles=0, normalize=False))
    np.testing.assert_array_equal(image, micrograph)
    assert grid.working_shape == (64, 64)


FLATTENED = PreprocessSettings(working_size=0, wavelet="", wiener_size=0, clahe_tiles=0,
                               flatten=2.0)


def ramp_with_discs(shape=(256, 256), box=16, noise=1.0, seed=2):
    """Noise on a brightness ramp of 20 noise sigmas across, with dark discs
    of `box` px diameter (particles, darker than the ice) at known centres."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:shape[0], :shape[1]]
    image = 20.0 * columns / shape[1] + rng.normal(scale=noise, size=shape)
    centres = [(64, 64), (64, 192), (192, 64), (192, 192)]
    for y, x in centres:
        image[(rows - y) ** 2 + (columns - x) ** 2 <= (box / 2) ** 2] -= 5.0
    return image.astype(np.float32), centres


def test_flattening_removes_a_brightness_ramp_and_keeps_the_particles():
    micrograph, centres = ramp_with_discs()
    image, _ = preprocess(micrograph, FLATTENED, box_size=16)
    quarter_means = [image[r:r + 128, c:c + 128][interior((128, 128), 0.25)].mean()
                     for r in (0, 128) for c in (0, 128)]
    assert max(quarter_means) - min(quarter_means) < 0.5  # the ramp spanned 20 sigmas
    discs = [image[y - 3:y + 4, x - 3:x + 4].mean() for y, x in centres]
    assert max(discs) < -3.0  # still 5 sigmas below the ice, which has median 0
    assert abs(np.median(image[interior(image.shape)])) < 0.1


def test_an_edge_band_does_not_change_the_interior_scaling():
    micrograph, _ = ramp_with_discs()
    banded = micrograph.copy()
    # padding artefacts: 50 times the noise either way, the local ice level on average
    banded[:6, ::2] += 50.0
    banded[:6, 1::2] -= 50.0
    plain, _ = preprocess(micrograph, FLATTENED, box_size=16)
    image, _ = preprocess(banded, FLATTENED, box_size=16)
    inside = interior(image.shape, 0.1)
    np.testing.assert_allclose(image[inside], plain[inside], atol=0.1)


def test_flattening_needs_the_box_size():
    with pytest.raises(InputError, match="box size"):
        preprocess(np.zeros((64, 64), np.float32), PreprocessSettings(flatten=2.0))


@pytest.mark.parametrize("shape,box,working_size,working_long_side", [
    ((4096, 4096), 128, 1024, 1024),   # beta-galactosidase: the box spans 32 px
    ((4096, 4096), 64, 1024, 2048),    # smaller particles: raised until it does
    ((4092, 5760), 100, 1024, 1843),
    ((4096, 4096), 16, 1024, 4096),    # up to the micrograph's own size
    ((768, 768), 16, 1024, 1024),      # a working size above the micrograph's stays
    ((4096, 4096), 64, 0, 4096),
    ((4096, 4096), 0, 1024, 1024)])    # no box, no raise
def test_the_working_size_is_raised_until_the_box_spans_the_working_box(
        shape, box, working_size, working_long_side):
    settings = PreprocessSettings(working_size=working_size)
    grid = settings.grid(shape, box)
    assert max(grid.working_shape) == working_long_side
    assert PreprocessSettings(working_size=working_size, working_box=0).grid(
        shape, box).working_shape == WorkingGrid.for_shape(shape, working_size).working_shape


def test_older_models_keep_their_fixed_working_size():
    older = PreprocessSettings().to_dict()
    del older["working_box"]  # model.json of a picker trained before the working box
    assert PreprocessSettings.from_dict(older).grid((4096, 4096), 64).working_shape \
        == (1024, 1024)
    assert PreprocessSettings.from_dict(PreprocessSettings().to_dict()).working_box == 32


def test_no_filters_means_flattened_but_older_models_stay_unflattened():
    assert PreprocessSettings.disabled().flatten > 0
    older = PreprocessSettings.disabled().to_dict()
    del older["flatten"]  # model.json of a picker trained before flattening
    assert PreprocessSettings.from_dict(older).flatten == 0


@pytest.mark.parametrize("options,normalize,flatten", [
    ([], True, 0.0),
    (["--no-preprocess"], True, 2.0),
    (["--no-preprocess", "--no-normalize"], False, 2.0),
    (["--no-preprocess", "--flatten", "0"], True, 0.0),
    (["--no-normalize"], False, 0.0)])
def test_command_line_preprocessing_options_all_take_effect(options, normalize, flatten):
    from cryoprune_scipion.cli import build_parser
    from cryoprune_scipion.cli.picking import preprocess_settings
    args = build_parser().parse_args(["preprocess", "--micrographs", "mic.mrc", "--out", "out",
                                      "--working-box", "48"] + options)
    settings = preprocess_settings(args)
    assert (settings.normalize, settings.flatten) == (normalize, flatten)
    assert settings.working_box == 48


@pytest.mark.parametrize("settings,message", [
    (PreprocessSettings(wavelet="db999"), "unknown wavelet"),
    (PreprocessSettings(wiener_size=8), "odd"),
    (PreprocessSettings(wavelet_mode="zero"), "wavelet mode"),
    (PreprocessSettings(working_size=-1), "working size"),
    (PreprocessSettings(working_box=-1), "working box"),
    (PreprocessSettings(flatten=-1), "flattening")])
def test_bad_settings_are_refused_with_a_message(settings, message):
    with pytest.raises(InputError, match=message):
        settings.validate()


def test_settings_survive_a_round_trip_through_a_dict():
    settings = PreprocessSettings(working_size=768, wavelet="sym8", clahe_tiles=8)
    assert PreprocessSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float32])
def test_mrc_micrographs_of_any_mode_are_read_as_float(tmp_path, dtype):
    data = (np.arange(40 * 30) % 100).reshape(30, 40).astype(dtype)
    path = str(tmp_path / "mic.mrc")
    import mrcfile
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
    image = read_micrograph(path)
    assert image.dtype == np.float32 and image.shape == (30, 40)
    np.testing.assert_array_equal(image, data.astype(np.float32))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_8bit_pictures_are_read_with_rows_and_columns_as_in_the_file(tmp_path, suffix):
    data = np.zeros((50, 70), dtype=np.uint8)
    data[10, 60] = 255
    path = str(tmp_path / ("mic" + suffix))
    Image.fromarray(data).save(path, **({"quality": 100} if suffix == ".jpg" else {}))
    image = read_micrograph(path)
    assert image.shape == (50, 70)
    assert np.unravel_index(np.argmax(image), image.shape) == (10, 60)


def test_corrupt_missing_and_nan_micrographs_name_the_file(tmp_path):
    corrupt = tmp_path / "broken.mrc"
    corrupt.write_bytes(b"not an mrc file at all" * 10)
    with pytest.raises(InputError, match="broken.mrc"):
        read_micrograph(str(corrupt))
    with pytest.raises(InputError, match="missing.mrc: micrograph file not found"):
        read_micrograph(str(tmp_path / "missing.mrc"))
    nan_path = str(tmp_path / "nan.mrc")
    write_micrograph(nan_path, np.full((8, 8), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="nan.mrc: the micrograph holds NaN"):
        read_micrograph(nan_path)
    with pytest.raises(InputError, match="unknown image format"):
        (tmp_path / "mic.xyz").write_text("x")
        read_micrograph(str(tmp_path / "mic.xyz"))


def test_a_blank_micrograph_gives_a_finite_image():
    image, _ = preprocess(np.full((96, 128), 7.0, dtype=np.float32),
                          PreprocessSettings(working_size=64))
    assert np.isfinite(image).all()
