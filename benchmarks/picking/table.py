"""Print the picking table of BENCHMARKS.md from the JSON results.

    python benchmarks/picking/table.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = [("(a) cryoprune YOLO, paper preprocessing", "results_cryoprune_paper.json"),
        ("(b) cryoprune YOLO, no preprocessing", "results_cryoprune_none.json"),
        ("(c) Topaz 0.3.20", "results_topaz.json"),
        ("(b') as (b), trained on all 4 micrographs (`--val-fraction 0`)",
         "results_cryoprune_none_all4.json"),
        ("(c2) as (c), 2,000 updates", "results_topaz_2000.json"),
        ("(b12) as (b8), trained on labels completed by (b8)'s own picks at 0.5",
         "results_cryoprune_completed_labels.json")]


def row(name, result):
    cpu = result["cpu_seconds_per_micrograph"]
    cells = [name, "%.4g" % result["threshold"]]
    for radius in ("27px", "54px"):
        figures = result["at_" + radius]
        cells += ["%.3f" % figures[k] for k in ("precision", "recall", "f1")]
    cells += ["%.3f" % result["at_27px"]["average_precision"],
              "%.2f" % cpu["preprocessing"], "%.2f" % cpu["inference"],
              "%.0f" % (result["training"]["cpu_seconds"] / 60)]
    return "| " + " | ".join(cells) + " |"


def main():
    print("| row | threshold | P 27 | R 27 | F1 27 | P 54 | R 54 | F1 54 | AP 27 "
          "| CPU s/mic. preprocessing | CPU s/mic. inference | training CPU min |")
    print("|" + " --- |" * 12)
    for name, filename in ROWS:
        path = os.path.join(HERE, filename)
        if os.path.exists(path):
            with open(path) as handle:
                print(row(name, json.load(handle)))


if __name__ == "__main__":
    main()
