"""ASPIRE's rotationally invariant class averaging on a stack (run with the
interpreter of the separate ASPIRE venv, see requirements-aspire.txt).

python aspire_runner.py IMAGES.npy K OUT.npz PIXEL_SIZE
Writes: features (bispectrum coefficients, real and imaginary parts),
neighbours (n, n_nbor: RIRClass2D's classes), the first K class averages of
DefaultClassAvgSource and the reference particle of each, and timings.
"""
import sys
import time

import numpy as np
from aspire.classification import RIRClass2D, TopClassSelector
from aspire.denoising import DefaultClassAvgSource
from aspire.basis import Coef
from aspire.source import ArrayImageSource

N_NEIGHBOURS = 50


def main(images_path, k, out_path):
    images = np.load(images_path).astype(np.float64)
    source = ArrayImageSource(images, pixel_size=float(sys.argv[4]) if len(sys.argv) > 4 else 1.0)
    start = time.time()
    classifier = RIRClass2D(source, fspca_components=400, bispectrum_components=300,
                            n_nbor=N_NEIGHBOURS, seed=0)
    # The default selector ranks every neighbourhood by the quality of its
    # average, i.e. averages all n classes (hours on 2 CPU cores); the first
    # K neighbourhoods are averaged instead.
    averages_source = DefaultClassAvgSource(source, n_nbor=N_NEIGHBOURS, classifier=classifier,
                                            class_selector=TopClassSelector())
    averages = averages_source.images[:k].asnumpy()
    seconds = time.time() - start
    features, _ = classifier.bispectrum(Coef(classifier.pca_basis, classifier.fspca_coef))
    features = np.asarray(features)
    np.savez(out_path, features=np.column_stack([features.real, features.imag]),
             neighbours=classifier.classes, averages=averages,
             references=np.asarray(averages_source.selection_indices[:k]),
             seconds=seconds)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
