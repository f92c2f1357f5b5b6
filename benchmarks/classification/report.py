"""Markdown tables of the classification benchmark results (for BENCHMARKS.md).

    python benchmarks/classification/report.py benchmarks/classification/results/simulated.json
"""
import json
import sys

NAMES = {"contrastive_refined": "this method, refined (contrastive start + multi-reference "
                                "alignment)",
         "contrastive": "contrastive + k-means++ + Fourier alignment (no refinement)",
         "alignment_kmeans": "alignment-based, reference-free (random seeds, hard)",
         "alignment_ml": "alignment-based, reference-free (random seeds, ML weights)",
         "pca_kmeans": "PCA + k-means, raw pixels",
         "polar_fourier_kmeans": "k-means, polar Fourier magnitudes",
         "aspire": "ASPIRE RIR bispectrum (k-means) / class averages",
         "oracle": "the clean views as references, one assignment pass (an oracle)"}


def main(path):
    with open(path) as f:
        results = json.load(f)
    print("| set | method | accuracy | NMI | ARI | average corr. | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    order = ["snr1", "snr0.1", "snr0.05", "snr0.02", "mixture_snr0.05", "aspire_snr0.1",
             "aspire_snr0.05"]
    keys = [k for k in order if k in results] + sorted(k for k in results if k.startswith("timing"))
    for key in keys:
        entry = results[key]
        label = "%s (n=%d)" % (key, entry["n"])
        for method in NAMES:
            row = entry["rows"].get(method)
            if row is None:
                continue
            if "error" in row:
                print("| %s | %s | failed: %s | | | | |" % (label, NAMES[method], row["error"]))
                continue
            print("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.0f |"
                  % (label, NAMES[method], row["accuracy"], row["nmi"], row["ari"],
                     row["average_correlation"], row["seconds"]))


if __name__ == "__main__":
    main(sys.argv[1])
