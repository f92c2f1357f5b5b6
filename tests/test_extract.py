"""`cryoprune extract`: windows centred on the coordinates, counts of the
boxes left out, carried columns, phase flipping, and the output contract."""
import csv
import logging

import mrcfile
import numpy as np
import pytest

from cryoprune_scipion.cli import main
from cryoprune_scipion.engine.io import read_stack, write_micrograph, write_table
from cryoprune_scipion.engine.simulate import apply_ctf, ctf

SHAPE = (160, 240)
PIXEL_SIZE = 2.0
BOX = 32


def blobs(centres, shape=SHAPE, sigma=2.0):
    rows, columns = np.mgrid[:shape[0], :shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    for x, y in centres:
        image += np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))
    return image


def write_session(folder, centres_per_micrograph, noise=0.01, transfer=None):
    """Micrographs mic<i>.mrc with a Gaussian blob at each centre and their
    coordinate files (x, y and a carried column `score`)."""
    rng = np.random.default_rng(0)
    paths = []
    for i, centres in enumerate(centres_per_micrograph):
        image = blobs(centres)
        if transfer is not None:
            image = apply_ctf(image, transfer)
        image += noise * rng.normal(size=SHAPE).astype(np.float32)
        path = str(folder / ("mic%d.mrc" % i))
        write_micrograph(path, image, PIXEL_SIZE)
        write_table(str(folder / ("mic%d.csv" % i)), ["x", "y", "score"],
                    [{"x": x, "y": y, "score": 0.1 * k} for k, (x, y) in enumerate(centres)])
        paths.append(path)
    return paths


def extract(paths, folder, out, *options):
    return main(["extract", "--micrographs", *paths, "--coords", str(folder), "--box",
                 str(BOX), "--out", str(out), *map(str, options)])


def read_particles(out):
    with open(out / "particles.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_mrcs(path):
    with mrcfile.open(path) as mrc:
        sampling = float(mrc.voxel_size.x)
    return read_stack(str(path), mmap=False), sampling


# inside; box crossing the left edge; inside, off-grid; box crossing the bottom
CENTRES = [(60, 50), (10, 80), (150.4, 99.6), (200, 150)]


def test_windows_centred_and_edges_counted(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    paths = write_session(tmp_path, [CENTRES, CENTRES[:1]])
    assert extract(paths, tmp_path, tmp_path / "out", "--sampling-rate", PIXEL_SIZE) == 0
    particles = read_particles(tmp_path / "out")
    assert [(p["micrograph"], p["index"]) for p in particles] == \
        [("mic0", "0"), ("mic0", "1"), ("mic1", "0")]
    assert list(particles[0]) == ["micrograph", "index", "x", "y", "score"]
    assert [float(p["x"]) for p in particles] == [60, 150.4, 60]
    assert [float(p["score"]) for p in particles] == [0.0, 0.2, 0.0]
    stack, sampling = read_mrcs(tmp_path / "out" / "mic0.mrcs")
    assert stack.shape == (2, BOX, BOX) and sampling == pytest.approx(PIXEL_SIZE)
    for window in stack:  # the blob's peak is the window's centre pixel
        assert np.unravel_index(window.argmax(), window.shape) == (BOX // 2, BOX // 2)
    ring = np.hypot(*np.meshgrid(np.arange(BOX) - BOX // 2,
                                 np.arange(BOX) - BOX // 2)) > 0.75 * BOX / 2
    assert np.allclose(stack[:, ring].mean(axis=1), 0, atol=1e-5)
    assert np.allclose(stack[:, ring].std(axis=1), 1, atol=1e-4)
    log = caplog.text
    assert "mic0.mrc: 2 particles; left out: 2 boxes crossing the edge" in log
    assert "3 particles of 32 px from 2 micrographs" in log


def test_downsample_and_invert(tmp_path):
    paths = write_session(tmp_path, [CENTRES[:1]])
    assert extract(paths, tmp_path, tmp_path / "out", "--downsample", 2, "--invert",
                   "--sampling-rate", PIXEL_SIZE) == 0
    stack, sampling = read_mrcs(tmp_path / "out" / "mic0.mrcs")
    assert stack.shape == (1, BOX // 2, BOX // 2) and sampling == pytest.approx(2 * PIXEL_SIZE)
    assert np.unravel_index(stack[0].argmin(), stack[0].shape) == (BOX // 4, BOX // 4)


def test_extract_folder_read_in_table_order_and_downsampled(tmp_path):
    """train-pruner and prune read an extract folder in the order of its
    particles.csv, Fourier-cropped like `extract --downsample`."""
    from cryoprune_scipion.engine.extraction import read_windows
    paths = write_session(tmp_path, [CENTRES, CENTRES[:1]])
    assert extract(paths, tmp_path, tmp_path / "full") == 0
    assert extract(paths, tmp_path, tmp_path / "half", "--downsample", 2) == 0
    windows = read_windows(str(tmp_path / "full"))[:]
    mic0, _ = read_mrcs(tmp_path / "full" / "mic0.mrcs")
    mic1, _ = read_mrcs(tmp_path / "full" / "mic1.mrcs")
    np.testing.assert_array_equal(windows, np.concatenate([mic0, mic1]))
    half = read_windows(str(tmp_path / "full"), downsample=2)
    assert half.shape == (3, BOX // 2, BOX // 2)
    np.testing.assert_array_equal(half[1], half[:][1])  # read lazily, batch or window
    half = half[:]
    # Crop then normalise on the ring (extract) or the reverse: one affine map apart.
    expected = read_windows(str(tmp_path / "half"))[:]
    for got, want in zip(half, expected):
        slope, offset = np.polyfit(got.ravel(), want.ravel(), 1)
        np.testing.assert_allclose(slope * got + offset, want, atol=1e-4)


def test_phase_flip_restores_the_particle(tmp_path):
    defocus = 1.2  # um
    paths = write_session(tmp_path, [CENTRES[:1]], noise=0,
                          transfer=ctf(SHAPE, PIXEL_SIZE, defocus_um=defocus))
    write_table(str(tmp_path / "ctf.csv"), ["micrograph", "defocus_u", "defocus_v",
                                            "defocus_angle"],
                [{"micrograph": "mic0", "defocus_u": defocus * 1e4,
                  "defocus_v": defocus * 1e4, "defocus_angle": 0}])
    assert extract(paths, tmp_path, tmp_path / "raw") == 0
    assert extract(paths, tmp_path, tmp_path / "flipped", "--ctf", tmp_path / "ctf.csv",
                   "--sampling-rate", PIXEL_SIZE) == 0
    truth = blobs([(BOX // 2, BOX // 2)], (BOX, BOX)).ravel()
    raw = read_mrcs(tmp_path / "raw" / "mic0.mrcs")[0][0].ravel()
    flipped = read_mrcs(tmp_path / "flipped" / "mic0.mrcs")[0][0].ravel()
    assert np.corrcoef(truth, flipped)[0, 1] > np.corrcoef(truth, raw)[0, 1] + 0.2


def test_contract_errors(tmp_path, capsys):
    paths = write_session(tmp_path, [CENTRES])
    out = tmp_path / "out"
    assert extract(paths, tmp_path, out) == 0
    before = (out / "mic0.mrcs").read_bytes()
    cases = [((), "already holds results"),
             (("--ctf", tmp_path / "ctf.csv"), "--ctf needs the micrograph pixel size"),
             (("--downsample", 0.5), "--downsample 0.5: give a factor of 1 or more")]
    for options, message in cases:
        assert extract(paths, tmp_path, out, *options) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("cryoprune extract: error:") and message in error
        assert "\n" not in error
    assert (out / "mic0.mrcs").read_bytes() == before
    assert extract(paths, tmp_path, tmp_path, "--overwrite") == 2
    assert "would replace the input %s" % tmp_path in capsys.readouterr().err
    (tmp_path / "mic0.csv").unlink()
    assert extract(paths, tmp_path, tmp_path / "other") == 2
    assert "have no coordinate file, the first %s" % (tmp_path / "mic0.csv") in \
        capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_workers_split_gives_one_workers_results(tmp_path):
    """The micrographs split over workers, as over the GPUs of --device (here
    CPU workers), give the stacks and table of one worker."""
    paths = write_session(tmp_path, [CENTRES, CENTRES[:1], CENTRES[2:]])
    assert extract(paths, tmp_path, tmp_path / "one") == 0
    assert extract(paths, tmp_path, tmp_path / "split", "--cpu-workers", 2) == 0
    assert (tmp_path / "split" / "particles.csv").read_text() == \
        (tmp_path / "one" / "particles.csv").read_text()
    for name in ["mic0.mrcs", "mic1.mrcs", "mic2.mrcs"]:
        assert np.array_equal(read_mrcs(tmp_path / "split" / name)[0],
                              read_mrcs(tmp_path / "one" / name)[0])
