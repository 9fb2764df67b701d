"""Start-up: ``collapse --help`` and ``collapse list`` as whole processes (issue 7, c).

Both against ``python -c pass`` (the interpreter's own start-up), interleaved. Targets:
``collapse --help`` < 0.4 s, and it imports neither torch nor matplotlib, checked with
``python -X importtime`` on the same command (the heaviest imports are printed). ``collapse
list`` runs on a folder of 20 small synthetic runs and is checked the same way. Also timed:
what ``collapse run`` imports before torch (the CLI, the config schema, the display).

    python bench/startup.py                 # 15 interleaved rounds, ~1 min
    python bench/startup.py --repeats 30
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    COLLAPSE,
    ROOT,
    child_env,
    fmt_s,
    interleave,
    machine,
    print_targets,
    run_process,
    save,
    table,
    target,
)
from synthetic import write_run

LIMIT_HELP = 0.4  # seconds
BEFORE_TORCH = "import collapse_cli.cli, collapse_cli.config, collapse_cli.display"
HEAVY = ("torch", "matplotlib")


def imports(args: list[str]) -> dict[str, Any]:
    """Which top-level packages ``collapse ARGS`` imports, and the slowest, by -X importtime."""
    argv = ["collapse", *args]
    code = f"import sys; sys.argv = {argv!r}; from collapse_cli.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    top: dict[str, int] = {}  # package -> cumulative µs of its slowest (outermost) import
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        cumulative, name = parts[1].strip(), parts[2].strip()
        if cumulative.isdigit():  # not the header line
            root = name.split(".")[0]
            top[root] = max(top.get(root, 0), int(cumulative))
    found = sorted(m for m in HEAVY if m in top)
    slowest = sorted(top.items(), key=lambda kv: -kv[1])[:6]
    return {"heavy_imported": found, "slowest": [(k, v / 1e6) for k, v in slowest]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    args = p.parse_args()
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")

    env = child_env(None)
    runs = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        for i in range(20):
            write_run(runs / f"20260101-0000{i:02d}-synthetic", steps=500, every=50, dim=32)
        has_list = (
            "list"
            in subprocess.run([COLLAPSE, "--help"], capture_output=True, text=True, cwd=ROOT).stdout
        )
        cmds = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "collapse --help": [COLLAPSE, "--help"],
            # What `collapse run` imports before torch: the CLI (typer, rich), the config's
            # schema (pydantic, yaml) and the display; torch comes with the registries.
            "CLI imports before torch": [sys.executable, "-c", BEFORE_TORCH],
        }
        if has_list:
            cmds["collapse list"] = [COLLAPSE, "list", "--runs-dir", str(runs)]
        result = interleave(
            {k: (lambda c=c: run_process(c, env)) for k, c in cmds.items()},
            args.repeats,
            label="start-up",
        )
        checks = {"collapse --help": imports(["--help"])}
        if has_list:
            checks["collapse list"] = imports(["list", "--runs-dir", str(runs)])
    finally:
        shutil.rmtree(runs, ignore_errors=True)

    base = result["python -c pass"]["median"]
    rows = []
    for k, r in result.items():
        heavy = checks.get(k, {}).get("heavy_imported")
        rows.append(
            [
                k,
                fmt_s(r["median"]),
                f"{r['spread']:.0%}",
                fmt_s(r["median"] - base),
                "-" if heavy is None else (", ".join(heavy) or "none"),
            ]
        )
    print()
    print(table(["command", "wall", "spread", "over python", "torch/matplotlib imported"], rows))
    for k, c in checks.items():
        slow = ", ".join(f"{m} {fmt_s(s)}" for m, s in c["slowest"])
        print(f"  {k}: slowest top-level imports: {slow}")
    if not has_list:
        print("  collapse list: not in this version of the CLI (skipped)")
    help_heavy = checks["collapse --help"]["heavy_imported"]
    list_heavy = checks.get("collapse list", {}).get("heavy_imported", [])
    targets = [
        target("collapse --help wall", result["collapse --help"]["median"], LIMIT_HELP, " s", "<"),
        {
            "target": "collapse --help imports neither torch nor matplotlib",
            "pass": not help_heavy,
            "text": "collapse --help imports neither torch nor matplotlib: "
            + ("PASS" if not help_heavy else f"MISS (imports {', '.join(help_heavy)})"),
        },
        {
            "target": "collapse list imports neither torch nor matplotlib",
            "pass": not list_heavy,
            "text": "collapse list imports neither torch nor matplotlib: "
            + ("PASS" if not list_heavy else f"MISS (imports {', '.join(list_heavy)})"),
        },
    ]
    print_targets(targets)
    save("startup", {"machine": info, "commands": result, "imports": checks, "targets": targets})


if __name__ == "__main__":
    main()
