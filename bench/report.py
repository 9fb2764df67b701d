"""Markdown tables of the saved results (bench/results/*.json), for docs/performance.md.

python bench/report.py            # every result file present, in the order of the issue
"""

from __future__ import annotations

import json
from typing import Any

from common import BREAKDOWN_HEADS, RESULTS, breakdown_cells, fmt_s


def md(headers: list[str], rows: list[list[Any]]) -> str:
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = [headers, align, *[[str(c) for c in r] for r in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def spread(*stats: dict[str, Any]) -> str:
    return f"{max(s['spread'] for s in stats):.0%}"


def verdicts(data: dict[str, Any]) -> str:
    return "\n".join(f"- {t['text']}" for t in data["targets"])


def demos(d: dict[str, Any]) -> str:
    rows, parts = [], []
    for demo, r in d["demos"].items():
        rows.append(
            [
                demo,
                fmt_s(r["collapse"]["median"]),
                fmt_s(r["bare"]["median"]),
                f"{r['ratio']:.3f}",
                spread(r["collapse"], r["bare"]),
                f"{r['steps_per_second']['collapse']:.0f} / {r['steps_per_second']['bare']:.0f}",
            ]
        )
        if "imports_collapse" in r:
            parts += [
                [f"{demo}: {side}", *breakdown_cells(r, side)] for side in ("collapse", "bare")
            ]
    out = md(
        ["demo", "collapse run", "bare script", "ratio", "spread", "loop steps/s (c / b)"], rows
    )
    if parts:
        out += "\n\n" + md(["process", *BREAKDOWN_HEADS], parts)
    return out + "\n\n" + verdicts(d)


def mlp(d: dict[str, Any]) -> str:
    sps, walls = d["steps_per_second"], d["process_wall"]
    rows = [
        [k, f"{v['median']:.3f}", f"{v['spread']:.0%}", fmt_s(walls[k]["median"])]
        for k, v in sps.items()
    ]
    head = f"{d['steps']} steps, metrics every {d['every']}\n\n"
    table = md(["variant", "loop steps/s", "spread", "process wall"], rows)
    return head + table + f"\n\nratio {d['ratio']:.3f}\n\n" + verdicts(d)


def metric_cost(d: dict[str, Any]) -> str:
    rows = []
    for r in d["sizes"]:
        row = [
            f"{r['n']} × {r['d']}",
            fmt_s(r["floor"]["median"]),
            fmt_s(r["syrk"]["median"]) if "syrk" in r else "-",
            fmt_s(r["suite"]["median"]),
            f"**{r['ratio']:.2f}**",
        ]
        if "baseline" in r:
            row += [fmt_s(r["baseline"]["median"]), f"{r['baseline_ratio']:.2f}"]
            row.append(f"{r['baseline']['median'] / r['suite']['median']:.2f}×")
            row.append(f"{r['baseline_max_rel_diff']:.0e}")
        row.append(spread(r["floor"], r["suite"]))
        rows.append(row)
    heads = ["N × d", "floor (eigvalsh)", "product ZcᵀZc", "suite", "suite / floor"]
    if d.get("baseline"):
        heads += [f"before ({d['baseline']})", "before / floor", "speed-up", "max rel. diff"]
    return md([*heads, "spread"], rows) + "\n\n" + verdicts(d)


def scaling(d: dict[str, Any]) -> str:
    rows = [
        [
            r["axis"],
            f"{r['n']} × {r['d']}",
            fmt_s(r["floor"]["median"]),
            fmt_s(r["syrk"]["median"]),
            fmt_s(r["suite"]["median"]),
            f"{r['ratio']:.2f}",
        ]
        for r in d["rows"]
    ]
    return md(["varies", "N × d", "floor", "product", "compute_metrics", "ratio"], rows)


def startup(d: dict[str, Any]) -> str:
    base = d["commands"]["python -c pass"]["median"]
    rows = []
    for k, r in d["commands"].items():
        heavy = d["imports"].get(k, {}).get("heavy_imported")
        shown = "-" if heavy is None else (", ".join(heavy) or "neither")
        rows.append(
            [f"`{k}`", fmt_s(r["median"]), fmt_s(r["median"] - base), f"{r['spread']:.0%}", shown]
        )
    heads = ["command", "wall", "over `python -c pass`", "spread", "torch / matplotlib"]
    return md(heads, rows) + "\n\n" + verdicts(d)


def plot_compare(d: dict[str, Any]) -> str:
    rows = [
        [f"`{k}`", fmt_s(r["median"]), fmt_s(r["min"]), fmt_s(r["max"]), d["figures"][k]]
        for k, r in d["commands"].items()
    ]
    runs = d["runs"]
    head = (
        f"two runs of {runs['steps']:,} steps logged every {runs['every']} ({runs['log_rows']:,} "
        f"rows, d = {runs['dim']}, {runs['mb_per_run']:.0f} MB each)\n\n"
    )
    return head + md(["command", "wall", "min", "max", "figures"], rows) + "\n\n" + verdicts(d)


def inspect_cost(d: dict[str, Any]) -> str:
    r = d["results"]
    rows = []
    for pair, ratio in r.items():
        if " / " not in pair:
            continue
        a, b = pair.split(" / ")
        cpu = f"{fmt_s(r[a]['cpu']['median'])} / {fmt_s(r[b]['cpu']['median'])}"
        rows.append([f"`{a}` vs `{b}`", fmt_s(r[a]["median"]), fmt_s(r[b]["median"]),
                     f"{ratio['wall']:.3f}", cpu, f"{ratio['cpu']:.3f}"])  # fmt: skip
    heads = ["comparison", "collapse", "NumPy", "wall ratio", "cpu (c / NumPy)", "cpu ratio"]
    n, dim = d["size"]
    head = f"{n:,} × {dim:,} float32; metrics agree to {d['max_rel_diff']:.1e}\n\n"
    return head + md(heads, rows) + "\n\n" + verdicts(d)


def sweep_figures(d: dict[str, Any]) -> str:
    w = d["wall"]
    rows = [[f"`log.figures={v}`", fmt_s(w[v]["median"]), f"{w[v]['spread']:.0%}",
             fmt_s(w[v]["cpu"]["median"])] for v in ("end", "none")]  # fmt: skip
    rows.append(["start-up (torch + optim)", fmt_s(w["start-up"]["median"]), "", ""])
    tail = (
        f"one run's figures {fmt_s(d['figures_per_run_s'])}, the run without them "
        f"{fmt_s(d['run_without_figures_s'])}, its loop {fmt_s(d['loop_s'])}"
    )
    heads = [f"sweep of {d['runs']} runs, 1 worker", "wall", "spread", "cpu"]
    return md(heads, rows) + "\n\n" + tail


def figure_count(d: dict[str, Any]) -> str:
    counts, results = d["counts"], d["results"]
    trees = list(d["six_panels"])
    rows = []
    for kind in ("wait", "serial"):
        for tree in trees:
            cells = [fmt_s(results[f"{kind} | {tree} | {v}"]["median"]) for v in counts]
            per = d["fits"][f"{kind} | {tree}"]["per_figure_s"]
            rows.append([f"{kind}, {tree}", *cells, fmt_s(per)])
    heads = ["", *[f"{n} figures" for n in counts.values()], "per figure"]
    six = [
        [tree, fmt_s(p["one"]["median"]), fmt_s(p["many"]["median"]),
         fmt_s((p["many"]["median"] - p["one"]["median"]) / 5)]
        for tree, p in d["six_panels"].items()
    ]  # fmt: skip
    heads_six = ["the main six panels", "one figure", "six figures", "a figure adds"]
    return md(heads, rows) + "\n\n" + md(heads_six, six)


def main() -> None:
    for name, render in [
        ("overhead_demos", demos),
        ("overhead_mlp", mlp),
        ("metric_cost", metric_cost),
        ("metric_scaling", scaling),
        ("startup", startup),
        ("plot_compare", plot_compare),
        ("overhead_inspect", inspect_cost),
        ("sweep_figures", sweep_figures),
        ("figure_count", figure_count),
    ]:
        for suffix in ("", "_cuda"):
            path = RESULTS / f"{name}{suffix}.json"
            if path.is_file():
                data = json.loads(path.read_text())
                m = data["machine"]
                print(f"### {name}{suffix}  ({m['date']}, {m['cpu']}, `{m['command']}`)\n")
                print(render(data) + "\n")


if __name__ == "__main__":
    main()
