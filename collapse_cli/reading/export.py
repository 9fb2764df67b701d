"""Tables for a paper or a notebook: a comparison as markdown, LaTeX or CSV, and a run's
metrics as CSV. Text only; nothing here draws or imports torch."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import ConfigError
from ..rundir import METRICS_CSV, write_atomic
from .compare import Comparison
from .predicts import READING, TARGET_NAMES, Predictors
from .run import Run
from .seeds import SeedComparison

TABLE_FORMATS = ("markdown", "latex", "csv")


def check_table_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in TABLE_FORMATS:
        raise ConfigError(f"--table {fmt}: choose one of {', '.join(TABLE_FORMATS)}")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}"


def comparison_table(result: Comparison | SeedComparison, fmt: str) -> str:
    """One row per run: its name in words, status, verdict and every shared metric's step-0
    and final value (λ_min as ``0 (rank 32/128)`` where it is structurally zero). For runs
    grouped by seed, one row per group: what sets it apart, its completed seeds, the majority
    verdict and every final metric as mean ± std. Then, when enough runs have an accuracy,
    the Kendall τ-b table (`_with_taus`)."""
    check_table_format(fmt)
    if isinstance(result, SeedComparison):
        header, body = _seed_rows(result)
        return _with_taus(result.predictors, header, body, fmt, len(result.keys) + 2, "mean ± std")
    stats = [r for r in result.rows if r.stat in ("step 0", "final")]
    header = ["run", "status", "verdict", *(f"{r.metric} ({r.stat})" for r in stats)]
    body = []
    for i, (run, label) in enumerate(zip(result.runs, result.labels, strict=True)):
        verdict = run.summary.get("verdict") if run.finished else None
        cells = [r.texts[i] or _number(r.values[i]) for r in stats]
        body.append([label, run.status, verdict or "-", *cells])
    return _with_taus(result.predictors, header, body, fmt, 3, "final")


def _with_taus(
    taus: Predictors | None,
    header: list[str],
    body: list[list[str]],
    fmt: str,
    text_cols: int,
    stat: str,
) -> str:
    """The table, and the τ table after it where there is one (3 runs or more with an
    accuracy): in markdown and LaTeX a second table under a line that says how to read it;
    in CSV, which holds one table, one more row per accuracy, its first cell ``Kendall τ-b
    vs kNN accuracy (4 runs)``, its τ under each metric's ``(<stat>)`` column, empty elsewhere
    (a metric that not every run has, and so no column, has no τ there)."""
    if taus is None or not taus.enough:
        return _render(header, body, fmt, text_cols)
    if fmt == "csv":
        at = {name: i for i, name in enumerate(header)}
        rows = []
        for target in taus.targets:
            row = [""] * len(header)
            row[0] = f"Kendall τ-b vs {TARGET_NAMES.get(target, target)} ({taus.runs} runs)"
            for p in taus.rows:
                if (i := at.get(f"{p.metric} ({stat})")) is not None:
                    row[i] = taus.text(p, target)
            rows.append(row)
        return _render(header, body + rows, fmt, text_cols)
    second = _render(
        ["metric", *(taus.header(t) for t in taus.targets)],
        [[p.metric, *(taus.text(p, t) for t in taus.targets)] for p in taus.rows],
        fmt,
        1,
    )
    caption = f"{taus.title}: {READING}"  # a comment in LaTeX; a paragraph in markdown
    caption = f"% {caption}\n" if fmt == "latex" else f"{caption}\n\n"
    return f"{_render(header, body, fmt, text_cols)}\n\n{caption}{second}"


def _seed_rows(result: SeedComparison) -> tuple[list[str], list[list[str]]]:
    header = [*result.keys, "seeds", "majority", *(f"{m} (mean ± std)" for m in result.metrics)]
    body = []
    for group in result.groups:
        outcome, count = group.majority()
        cells = []
        for m in result.metrics:
            mean, std, _ = group.stat(m)
            text = group.min_eig_text() if m == "min_eig" else None  # structural, not round-off
            cells.append(text or _number(mean) + ("" if std is None else f" ± {_number(std)}"))
        seeds = f"{len(group.used)}/{len(group.members)}"
        params = [str(group.params.get(k)) for k in result.keys]
        body.append([*params, seeds, f"{outcome} {count}/{len(group.members)}", *cells])
    return header, body


def _render(header: list[str], body: list[list[str]], fmt: str, text_cols: int) -> str:
    """The table as CSV, a LaTeX tabular (the first ``text_cols`` columns left-aligned) or
    markdown."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows([header, *body])
        return buf.getvalue().rstrip("\n")
    if fmt == "latex":

        def tex(cell: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                         ("#", r"\#"), ("$", r"\$"), ("±", r"$\pm$"),
                         ("τ", r"$\tau$")):  # fmt: skip
                cell = cell.replace(a, b)
            return cell

        align = "l" * text_cols + "r" * (len(header) - text_cols)
        lines = [r"\begin{tabular}{" + align + "}", r"\toprule"]
        lines.append(" & ".join(map(tex, header)) + r" \\")
        lines.append(r"\midrule")
        lines += [" & ".join(map(tex, row)) + r" \\" for row in body]
        return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"])
    rows = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(c.replace("|", r"\|") for c in row) + " |" for row in rows)


def write_metrics_csv(run: Run, path: Path | None = None) -> Path:
    """metrics.jsonl as CSV (one column per key, in the order the keys first appear; empty
    where a row lacks one), next to it unless ``path`` is given."""
    keys = list(dict.fromkeys(k for row in run.metrics for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in run.metrics:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    path = path or run.path / METRICS_CSV
    write_atomic(path, buf.getvalue())
    return path
