"""One run on several processes: steps/s of configs/nt-xent.yaml at a global batch of 1024 on
one process and on N ranks, and the time a log step's gather adds (issue 13).

CPU (the default, N = 2 gloo ranks): ``collapse run configs/nt-xent.yaml train.batch_size=1024
... --device cpu`` with and without ``--nproc N``, interleaved; steps/s is summary.json's (the
loop, its log steps included). Both sides get the machine's cores: the one process all of them,
each rank its share (``--nproc`` sets OMP_NUM_THREADS to cores / N). Then, inside N spawned
ranks, the collectives of one log step (the embeddings and their positives, 1024/N × 32 per
rank, and the averaged scalars) timed beside compute_metrics on the gathered 1024 × 32, and
the stop agreement every step makes.

CUDA (``--device cuda --nproc N``, nccl, one device per rank): the same runs and timings on
the GPUs, and one more run in N spawned ranks whose unlogged steps are checked for host
synchronisations, counted as tests/test_run_folder.py counts read-backs (.item, .tolist, ...
made by collapse_cli code, of CUDA tensors here) plus torch's sync debug mode: there must be
none.

    python bench/distributed.py                      # CPU, 1 vs 2 gloo ranks, ~4 min
    python bench/distributed.py --device cuda --nproc 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from common import COLLAPSE, child_env, fmt_s, interleave, machine, save, stats, table

CONFIG = "configs/nt-xent.yaml"
BATCH, DIM = 1024, 32  # nt-xent's embeddings: out_dim 32
GATHER_REPEATS = 200


# --------------------------------------------------------------------------- whole runs
def run(nproc: int, device: str, steps: int, every: int, folder: Path, threads: int) -> float:
    """One ``collapse run``; returns its loop's steps/s (summary.json). ``threads``: the one
    process's OMP threads (the ranks get the cores shared out, --nproc's default)."""
    import subprocess

    out = folder / f"{nproc}-{time.monotonic_ns()}"
    cmd = [
        COLLAPSE, "run", CONFIG, f"train.batch_size={BATCH}", f"train.steps={steps}",
        f"log.every={every}", "--device", device, "-q", "--runs-dir", str(out),
    ] + ["--nproc", str(nproc)] * (nproc > 1)  # fmt: skip
    env = child_env(threads if nproc == 1 else None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    (path,) = out.iterdir()
    rate = json.loads((path / "summary.json").read_text())["steps_per_second"]
    shutil.rmtree(out)
    return rate


# --------------------------------------------------------------------------- inside the ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank: int, nproc: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(nproc),
    )  # fmt: skip


def _median_s(fn: Any, sync: Any, repeats: int) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def gather_rank(rank: int, nproc: int, port: int, device: str, out: str) -> None:
    """One rank: the log step's collectives and the per-step stop agreement, timed."""
    import torch

    from collapse_cli import collectives, metrics
    from collapse_cli.training.distributed import joined

    _rank_env(rank, nproc, port)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    with joined(device) as world:
        g = torch.Generator().manual_seed(rank)
        z = torch.randn(BATCH // nproc, DIM, generator=g).to(world.device)
        z_pos = z + 0.1 * torch.randn(z.shape, generator=g).to(world.device)
        scalars = torch.randn(6, dtype=torch.float64).to(world.device)

        def sync() -> None:
            if world.device.type == "cuda":
                torch.cuda.synchronize(world.device)

        def gather() -> None:
            collectives.gather_detached(z)
            collectives.gather_detached(z_pos)
            collectives.mean_over_ranks(scalars).tolist()

        whole, whole_pos = collectives.gather_detached(z), collectives.gather_detached(z_pos)
        found = {
            "gather": _median_s(gather, sync, GATHER_REPEATS),
            "stop_agreement": _median_s(lambda: world.any(False), sync, GATHER_REPEATS),
            "compute_metrics": _median_s(
                lambda: metrics.compute_metrics(whole, whole_pos), sync, GATHER_REPEATS // 4
            ),
        }
        if world.main:
            Path(out).write_text(json.dumps(found))


class _Counter:
    """Host read-backs of CUDA tensors by collapse_cli code and torch's sync warnings, per
    step; the loop's reporter, so that it knows which steps were logged."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")

    def __init__(self, every: int, steps: int) -> None:
        import torch

        self.every, self.steps, self.count, self.unlogged = every, steps, 0, []
        for name in self.NAMES:
            setattr(torch.Tensor, name, self._wrap(getattr(torch.Tensor, name)))

    def _wrap(self, original: Any) -> Any:
        def counted(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            if tensor.is_cuda and "collapse_cli" in sys._getframe(1).f_code.co_filename:
                self.count += 1
            return original(tensor, *args, **kwargs)

        return counted

    def start(self, steps: int) -> None: ...
    def log(self, row: dict[str, Any], dim: int) -> None: ...

    def advance(self, step: int) -> None:
        done = step - 1  # the step that just ended (advance(0) comes before the first)
        if step > 0 and done % self.every and done != self.steps - 1:
            self.unlogged.append(self.count)
        self.count = 0


def sync_rank(rank: int, nproc: int, port: int, steps: int, every: int, out: str) -> None:
    """One rank of a short CUDA run whose unlogged steps are checked for synchronisations."""
    import torch

    from collapse_cli import run_experiment

    _rank_env(rank, nproc, port)
    counter = _Counter(every, steps)
    overrides = [f"train.batch_size={BATCH}", f"train.steps={steps}", f"log.every={every}"]
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(
            CONFIG, [*overrides, "device=cuda"], runs_dir=Path(out).parent / "runs",
            reporter=counter,
        )  # fmt: skip
    torch.cuda.set_sync_debug_mode(0)
    if rank == 0:
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        found = {"read_backs_per_unlogged_step": counter.unlogged, "sync_warnings": len(syncs)}
        Path(out).write_text(json.dumps(found))


def in_ranks(target: Any, nproc: int, *args: Any) -> dict[str, Any]:
    import torch.multiprocessing as mp

    out = Path(tempfile.mkdtemp(prefix="bench-ddp-")) / "found.json"
    mp.start_processes(target, args=(nproc, _free_port(), *args, str(out)), nprocs=nproc)
    found = json.loads(out.read_text())
    shutil.rmtree(out.parent)
    return found


# --------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    p.add_argument("--nproc", type=int, default=2, help="ranks of the distributed side")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=60, help="steps of each run (default 60)")
    p.add_argument("--every", type=int, default=20, help="log interval (default 20)")
    p.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="OMP threads of the one process "
        "(default: every core; the ranks get cores / N each)",
    )  # fmt: skip
    args = p.parse_args()
    device, nproc = args.device, args.nproc
    info = machine(device)
    print(
        f"{info['cpu']} ({info['cores']} cores), device {device}, global batch {BATCH}, "
        f"1 process ({args.threads} threads) vs {nproc} ranks, {args.steps} steps, "
        f"log every {args.every}, load {info['load_avg_1m_at_start']}"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-ddp-runs-"))
    rates: dict[str, list[float]] = {"1 process": [], f"{nproc} ranks": []}

    def side(ranks: int, name: str) -> float:
        rate = run(ranks, device, args.steps, args.every, folder, args.threads)
        rates[name].append(rate)
        return 1.0 / rate

    try:
        interleave(
            {"1 process": lambda: side(1, "1 process"),
             f"{nproc} ranks": lambda: side(nproc, f"{nproc} ranks")},
            args.repeats, label="steps/s",
        )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sps = {k: stats(v) for k, v in rates.items()}
    speedup = sps[f"{nproc} ranks"]["median"] / sps["1 process"]["median"]
    print()
    print(
        table(
            ["side", "steps/s", "spread"],
            [[k, f"{v['median']:.2f}", f"{v['spread']:.0%}"] for k, v in sps.items()],
        )
    )
    print(f"  {nproc} ranks / 1 process: {speedup:.2f} ×")

    cost = in_ranks(gather_rank, nproc, device)
    print()
    rows = [
        ["log step: gather z, z_pos and the scalars", fmt_s(cost["gather"])],
        [f"log step: compute_metrics, gathered {BATCH} × {DIM}", fmt_s(cost["compute_metrics"])],
        ["every step: the stop agreement", fmt_s(cost["stop_agreement"])],
    ]
    print(table([f"inside {nproc} ranks", "median"], rows))
    result: dict[str, Any] = {
        "machine": info, "nproc": nproc, "threads": args.threads, "batch": BATCH,
        "steps": args.steps,
        "every": args.every, "steps_per_second": sps, "speedup": speedup, "inside_ranks": cost,
    }  # fmt: skip
    if device.startswith("cuda"):
        syncs = in_ranks(sync_rank, nproc, 12, 4)
        print(f"\nhost synchronisations on unlogged steps (rank 0): {syncs}")
        result["synchronisations"] = syncs
    name = "distributed" if device == "cpu" else "distributed_cuda"
    save(name + (f"_threads{args.threads}" if args.threads != os.cpu_count() else ""), result)


if __name__ == "__main__":
    main()
