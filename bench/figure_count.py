"""What a run's figures cost as a run has more of them (issue 18, point 2).

One run of ``configs/dino-no-centering.yaml`` for 300 steps (kNN, the loss's parts, the spectra and
``log.at``'s encoder: 11 figures) is made at the start; copies of its folder without some of
those columns have 8 to 11 figures, and one without the spectra 6. For each copy, in
interleaved rounds:

- ``wait``: what ``collapse run`` waits for when it ends: the figure helper
  (reading/drawer.py) started, given the time torch's import gives it to warm up, then asked
  to draw the folder (``Drawer.draw``), timed from the request to the answer;
- ``serial``: the same figures drawn one after another by ``plot_run`` in one process that
  drew them once before (matplotlib and its caches warm): the work itself, on one core.

Each series is fitted with a + b · figures (least squares): b is what one more figure adds.
Then, apart from the number of panels: the main six panels drawn as one figure (the overview)
and as six figures, in one warm process; a sixth of the difference is what a figure itself
costs, beside the panels it holds.
``--tree PATH`` times another checkout of the package as well (a git worktree of an older
commit, say), in the same rounds and on the same folders.

    python bench/figure_count.py                       # 5 rounds, ~3 min on 2 cores
    python bench/figure_count.py --tree /tmp/old --repeats 3   # ~5 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import COLLAPSE, ROOT, child_env, fmt_s, interleave, machine, save, stats, table

CONFIG = "configs/dino-no-centering.yaml"
OVERRIDES = ["log.figures=none", "train.steps=300"]
WARM_S = 3.0  # what torch's import gives the helper to warm up in `collapse run`

WAIT = r"""
import shutil, sys, time
from pathlib import Path
from collapse_cli.reading import drawer
assert drawer.PACKAGE_ROOT.samefile("."), drawer.PACKAGE_ROOT  # the tree asked for
folder, warm, expected = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
shutil.rmtree(folder / "plots", ignore_errors=True)
helper = drawer.start()
time.sleep(warm)
drawer.take()
t = time.perf_counter()
paths = helper.draw(folder)
wall = time.perf_counter() - t
assert paths is not None and len(paths) == expected, (paths, expected)
print(wall)
"""

SERIAL = r"""
import sys, tempfile, time
from pathlib import Path
from collapse_cli.reading.figures import plot_run
folder, expected = Path(sys.argv[1]), int(sys.argv[3])
out = Path(tempfile.mkdtemp())
plot_run(folder, out / "warm")
t = time.perf_counter()
paths = plot_run(folder, out / "timed")
wall = time.perf_counter() - t
assert len(paths) == expected, (paths, expected)
print(wall)
"""

SPLIT = r"""
import json, sys, tempfile, time
from pathlib import Path
from collapse_cli.reading.figures import figures, save
from collapse_cli.reading.panels import OVERVIEW
from collapse_cli.reading.run import load_run
run, out = load_run(Path(sys.argv[1])), Path(tempfile.mkdtemp())
times = {}
for rnd in range(2):  # the first round warms matplotlib and its caches
    for kind in ("one", "many"):
        figs = figures(run)
        assert figs["overview"].axes and len(figs["overview"].axes) >= len(OVERVIEW)
        some = {"overview": figs["overview"]} if kind == "one" else {n: figs[n] for n in OVERVIEW}
        t = time.perf_counter()
        save(some, out / kind)
        times[kind] = time.perf_counter() - t
print(json.dumps(times))
"""

# What each copy leaves out: metrics keys (a prefix ends with /) and files.
VARIANTS = {
    "all": ([], []),
    "no kNN": (["knn_acc"], []),
    "no kNN, loss parts": (["knn_acc", "teacher_entropy", "kl"], []),
    "no kNN, loss parts, log.at": (["knn_acc", "teacher_entropy", "kl", "encoder/"], []),
    "no kNN, loss parts, log.at, spectra": (
        ["knn_acc", "teacher_entropy", "kl", "encoder/"],
        ["spectrum.jsonl"],
    ),
}


def _drop(row: dict, keys: list[str]) -> dict:
    return {
        k: v
        for k, v in row.items()
        if not any(k == d or (d.endswith("/") and k.startswith(d)) for d in keys)
    }


def make_variant(full: Path, dest: Path, keys: list[str], files: list[str]) -> Path:
    """A copy of the run folder ``full`` without the metrics ``keys`` and the ``files``."""
    shutil.copytree(full, dest, ignore=shutil.ignore_patterns("plots", *files))
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    text = "".join(json.dumps(_drop(r, keys)) + "\n" for r in rows)
    (dest / "metrics.jsonl").write_text(text)
    summary = json.loads((full / "summary.json").read_text())
    for part in ("max", "min", "final", "first"):
        if isinstance(summary.get(part), dict):
            summary[part] = _drop(summary[part], keys)
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def count_figures(tree: Path, folder: Path) -> int:
    code = (
        "import sys; from collapse_cli.reading.figures import figures; "
        "print(len(figures(sys.argv[1])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        env=_env(tree),
        cwd=tree,  # `-c` puts the working folder first on sys.path
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return int(out.stdout)


def _env(tree: Path) -> dict[str, str]:
    env = child_env(1)
    env["PYTHONPATH"] = str(tree)
    env["MPLBACKEND"] = "Agg"
    return env


def timed(script: str, tree: Path, folder: Path, expected: int) -> float:
    cmd = [sys.executable, "-c", script, str(folder), str(WARM_S), str(expected)]
    out = subprocess.run(cmd, env=_env(tree), cwd=tree, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least squares a + b·x: (a, b)."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b if n > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--tree", type=Path, help="another checkout to time in the same rounds")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")
    trees = {"this tree": ROOT} | ({f"{args.tree}": args.tree.resolve()} if args.tree else {})
    tmp = Path(tempfile.mkdtemp(prefix="bench-figure-count-"))
    make = [COLLAPSE, "run", CONFIG, "--runs-dir", str(tmp / "runs"), "-q", *OVERRIDES]
    made = subprocess.run(make, env=child_env(1), cwd=ROOT, capture_output=True, text=True)
    if made.returncode:
        raise SystemExit(made.stderr[-2000:])
    (full,) = (tmp / "runs").iterdir()
    folders = {
        name: make_variant(full, tmp / f"v{i}", keys, files)
        for i, (name, (keys, files)) in enumerate(VARIANTS.items())
    }
    counts = {name: count_figures(ROOT, f) for name, f in folders.items()}
    for tree in trees.values():  # both trees draw the same figures of each folder
        assert {n: count_figures(tree, f) for n, f in folders.items()} == counts
    fns = {}
    for name, folder in folders.items():
        for label, tree in trees.items():
            for kind, script in (("wait", WAIT), ("serial", SERIAL)):
                key = f"{kind} | {label} | {name}"
                fns[key] = lambda s=script, t=tree, f=folder, n=counts[name]: timed(s, t, f, n)
    results = interleave(fns, args.repeats, label="figures")
    # The main six panels as one figure (the overview) and as six: what a figure adds.
    six = folders["no kNN, loss parts"]  # its overview holds exactly the main six
    split: dict[str, dict[str, list[float]]] = {t: {"one": [], "many": []} for t in trees}
    for _ in range(args.repeats):
        for label, tree in trees.items():
            out = subprocess.run(
                [sys.executable, "-c", SPLIT, str(six)],
                env=_env(tree),
                cwd=tree,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
            for kind, t in json.loads(out.stdout.strip().splitlines()[-1]).items():
                split[label][kind].append(t)
    rows, fits = [], {}
    for kind in ("wait", "serial"):
        for label in trees:
            xs = [counts[n] for n in folders]
            ys = [results[f"{kind} | {label} | {n}"]["median"] for n in folders]
            a, b = fit(xs, ys)
            fits[f"{kind} | {label}"] = {"fixed_s": a, "per_figure_s": b}
            spread = max(results[f"{kind} | {label} | {n}"]["spread"] for n in folders)
            cells = [fmt_s(y) for y in ys]
            rows.append([f"{kind}, {label}", *cells, fmt_s(b), fmt_s(a), f"{spread:.0%}"])
    heads = [f"{counts[n]} figures" for n in folders]
    print(f"\n{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} cores")
    print(table(["", *heads, "per figure", "fixed", "spread"], rows))
    split_rows, split_stats = [], {}
    for label in trees:
        one, many = (stats(split[label][k]) for k in ("one", "many"))
        split_stats[label] = {"one": one, "many": many}
        per = (many["median"] - one["median"]) / 5
        split_rows.append([label, fmt_s(one["median"]), fmt_s(many["median"]), fmt_s(per)])
    print("\nthe main six panels drawn as one figure (the overview) or as six, one process")
    print(table(["", "one figure", "six figures", "each figure more adds"], split_rows))
    save(
        "figure_count",
        {
            "machine": info,
            "counts": counts,
            "results": results,
            "fits": fits,
            "six_panels": split_stats,
        },
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
