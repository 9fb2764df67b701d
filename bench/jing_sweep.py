"""How many dimensions InfoNCE leaves collapsed as the augmentation grows: the sweep of
configs/jing-linear-sweep.yaml (Jing et al. 2022, Sec. 4) read back, one row per strength.

For each run, from its own files: the final `rank` (the run's metrics.jsonl), d − rank (the
collapsed dimensions), and from the final covariance spectrum of spectrum.jsonl how many
eigenvalues lie below 10⁻³ and 10⁻⁶ of λ₁, λ₈ and λ₉ relative to λ₁ (the gap between the 8
clean and the 8 noisy directions), and the first logged step at which the rank reached its
final value. The last spectrum is also drawn, λ_i / λ₁ on a log axis per strength (the
embedding-space counterpart of the paper's Figure 3, which shows the weight matrix's singular
values).

    collapse sweep configs/jing-linear-sweep.yaml                  # 14 runs, ~3 min on one core
    python bench/jing_sweep.py runs/sweep-<stamp>-jing-linear-sweep --figure docs/jing-spectrum.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from common import save, save_figure, table


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one_run(folder: Path) -> dict[str, Any]:
    metrics = read_jsonl(folder / "metrics.jsonl")
    spectrum = read_jsonl(folder / "spectrum.jsonl")[-1]["eigenvalues"]
    lam = sorted(spectrum, reverse=True)
    d, rank = len(lam), int(metrics[-1]["rank"])
    reached = next(row["step"] for row in metrics if int(row["rank"]) == rank)
    return {
        "rank": rank,
        "collapsed": d - rank,
        "below_1e-3": sum(v < 1e-3 * lam[0] for v in lam),
        "below_1e-6": sum(v < 1e-6 * lam[0] for v in lam),
        "lambda_8_over_1": lam[7] / lam[0],
        "lambda_9_over_1": lam[8] / lam[0],
        "rank_reached_at": reached,
        "effective_rank": metrics[-1]["effective_rank"],
        "spectrum": [v / lam[0] for v in lam],
        "d": d,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sweep", type=Path, help="the sweep folder of configs/jing-linear-sweep.yaml")
    ap.add_argument("--figure", type=Path, help="draw the final spectra into this PNG")
    args = ap.parse_args()
    index = json.loads((args.sweep / "sweep.json").read_text())
    by_noise: dict[float, list[dict[str, Any]]] = {}
    for run in index["runs"]:
        if run["status"] != "completed":
            print(f"skipped: {run['folder']} ({run['status']})", file=sys.stderr)
            continue
        got = one_run(args.sweep / run["folder"]) | {"seed": run["seed"]}
        by_noise.setdefault(float(run["params"]["views.noise"]), []).append(got)

    def cell(runs: list[dict[str, Any]], key: str, fmt: str = "{}") -> str:
        return " / ".join(fmt.format(r[key]) for r in runs)  # one value per seed

    rows = []
    for noise, runs in sorted(by_noise.items()):
        rows.append(
            [
                f"{noise:g}",
                f"{noise * noise:g}",
                cell(runs, "rank"),
                cell(runs, "collapsed"),
                cell(runs, "below_1e-6"),
                cell(runs, "below_1e-3"),
                cell(runs, "lambda_8_over_1", "{:.2f}"),
                cell(runs, "lambda_9_over_1", "{:.1e}"),
                cell(runs, "rank_reached_at"),
                f"{statistics.mean(r['effective_rank'] for r in runs):.2f}",
            ]
        )
    heads = ["noise σ", "k = σ²", "rank", "collapsed", "< 1e-6 λ₁", "< 1e-3 λ₁", "λ₈/λ₁", "λ₉/λ₁"]
    print("one value per seed (seed 0 / seed 1); effective rank: mean over the seeds")
    print(table([*heads, "rank from step", "eff. rank"], rows))
    if args.figure:
        draw(by_noise, args.figure)
    save("jing_sweep", {"sweep": args.sweep.name, "by_noise": by_noise})


def draw(by_noise: dict[float, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    cmap = plt.get_cmap("viridis")
    for i, (noise, runs) in enumerate(sorted(by_noise.items())):
        r = runs[0]  # seed 0
        xs = range(1, r["d"] + 1)
        ys = [max(v, 1e-18) for v in r["spectrum"]]
        ax.plot(
            xs, ys, "o-", ms=3, color=cmap(i / max(len(by_noise) - 1, 1)), label=f"σ = {noise:g}"
        )
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index i")
    ax.set_ylabel("λ_i / λ₁ of the embedding covariance")
    ax.set_title("InfoNCE on a linear 16→16 map, noise on the last 8 inputs (step 10,000, seed 0)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, title="views.noise", title_fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
