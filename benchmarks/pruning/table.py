"""Markdown tables of benchmarks/pruning/results.json for BENCHMARKS.md."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ["accuracy", "precision", "recall", "f1", "roc_auc", "train_seconds"]


def table(section):
    lines = ["| examples per class | method | accuracy | precision | recall | F1 | "
             "ROC AUC | train wall s |", "|---|---|---|---|---|---|---|---|"]
    for n, rows in section.items():
        for method, metrics in rows.items():
            lines.append("| %s | %s | %s |" % (n, method, " | ".join(
                "%.3f" % metrics[c] if c != "train_seconds" else "%.0f" % metrics[c]
                for c in COLUMNS)))
    return "\n".join(lines)


def main():
    with open(os.path.join(HERE, "results.json")) as f:
        results = json.load(f)
    print("Real (beta-galactosidase, %d test windows per class)\n"
          % results["settings"]["real_test_per_class"])
    print(table(results["real"]))
    print("\nSimulated (SNR %s)\n" % results["settings"]["simulated_snr"])
    print(table(results["simulated"]))


if __name__ == "__main__":
    main()
