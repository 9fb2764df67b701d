"""Synthetic run folders in the documented format (README, "The run folder"), for benchmarks.

``write_run`` writes config.yaml, meta.json, metrics.jsonl, spectrum.jsonl and summary.json of
a finished run of ``steps`` steps logged every ``every`` (and at the last step), with a
d-dimensional spectrum that decays as a power law and shrinks over training, and the metrics
computed from it. NumPy only; nothing is imported from the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from collapse_cli.catalogue import ORDER

# The metrics a one-view run without labels or pairs logs, in the order the comparison table
# shows them (ORDER also holds metrics of two-view, labelled and paired runs: not written here).
ONE_VIEW = {"loss", "variance", "min_eig", "max_eig", "rank", "effective_rank", "rankme"}
ONE_VIEW |= {"participation_ratio", "alpha_req", "std_l2", "uniformity", "mean_cosine"}
ONE_VIEW |= {"norm_mean", "grad_norm"}
KEYS = [k for k in ORDER if k in ONE_VIEW]

CONFIG = """\
name: {name}
seed: {seed}
device: cpu
data: {{name: gaussian, n: 512, dim: 32}}
encoder: {{name: linear, out_dim: {dim}, bias: true, projector: null}}
loss: {{name: {loss}}}
optimizer: {{name: adam, lr: 0.001, betas: [0.9, 0.999], eps: 1.0e-08, weight_decay: 0.0,
  amsgrad: false}}
train: {{steps: {steps}, batch_size: null, checkpoint_every: null, deterministic: false}}
log:
  every: {every}
  spectrum: true
  verdict: {{complete_variance_ratio: 0.001, complete_std_l2: 0.05, dimensional_fraction: 0.25}}
"""


def write_run(
    path: Path,
    *,
    steps: int = 100_000,
    every: int = 10,
    dim: int = 128,
    loss: str = "variance",
    seed: int = 0,
) -> Path:
    """Write a completed synthetic run into ``path`` (created); returns ``path``."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    name = path.name.split("-", 2)[-1]
    logged = np.unique(np.r_[np.arange(0, steps, every), steps - 1])  # (L,)
    frac = logged / max(steps - 1, 1)  # 0 → 1 over training

    # Spectra (L, d): λ_i ∝ i^(−α) with α rising from 0.6 to 1.6 and the scale falling 1000×.
    i = np.arange(1, dim + 1)
    alpha = 0.6 + frac[:, None]
    lam = 3.0 * np.exp(-np.log(1e3) * frac)[:, None] * i[None, :] ** -alpha
    lam *= np.exp(0.01 * rng.standard_normal(lam.shape))
    lam = -np.sort(-lam, axis=1)  # descending
    sigma = np.sqrt(lam)
    p = sigma / sigma.sum(1, keepdims=True)
    er = np.exp(-(p * np.log(p)).sum(1))
    pr = lam.sum(1) ** 2 / (lam**2).sum(1)
    cols = {
        "loss": lam.mean(1) * (1 + 0.01 * rng.standard_normal(len(logged))),
        "variance": lam.mean(1),
        "min_eig": lam[:, -1],
        "max_eig": lam[:, 0],
        "rank": np.full(len(logged), dim),
        "effective_rank": er,
        "rankme": er * 1.02,
        "participation_ratio": pr,
        "alpha_req": alpha[:, 0],
        "std_l2": (1 / np.sqrt(dim)) * (1 - 0.9 * frac),
        "uniformity": -3.9 * (1 - frac) - 0.01,
        "mean_cosine": 0.9 * frac,
        "norm_mean": 6.0 - 2.0 * frac,
        "grad_norm": 0.1 * np.exp(-3 * frac),
    }
    times = logged * 0.01  # 100 steps/s

    with open(path / "metrics.jsonl", "w") as f:
        for k, step in enumerate(logged):
            row = {"step": int(step), "time": round(float(times[k]), 4)}
            for key in KEYS:
                value = cols[key][k]
                row[key] = int(value) if key == "rank" else float(value)
            f.write(json.dumps(row) + "\n")
    with open(path / "spectrum.jsonl", "w") as f:
        for k, step in enumerate(logged):
            f.write(json.dumps({"step": int(step), "eigenvalues": lam[k].tolist()}) + "\n")

    (path / "config.yaml").write_text(
        CONFIG.format(name=name, seed=seed, dim=dim, loss=loss, steps=steps, every=every)
    )
    meta = {
        "id": path.name,
        "name": name,
        "status": "completed",
        "started": "2026-01-01T00:00:00+00:00",
        "ended": "2026-01-01T00:16:40+00:00",
        "command": f"collapse run synthetic.yaml train.steps={steps} log.every={every}",
        "seed": seed,
        "device": "cpu",
        "device_name": "x86_64",
        "versions": {"python": "3.11", "torch": "2.13.0", "collapse_cli": "0.1.0"},
        "git_commit": None,
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    final = {"step": int(logged[-1]), "time": float(times[-1])}
    final.update({key: float(cols[key][-1]) for key in KEYS})
    final["rank"] = dim
    summary = {
        "id": path.name,
        "name": name,
        "status": "completed",
        "loss": loss,
        "steps": steps,
        "steps_done": steps,
        "wall_time_s": float(times[-1]),
        "steps_per_second": 100.0,
        "batch_size": 512,
        "dim": dim,
        "rank_ceiling": dim,
        "initial_rank": dim,
        "final": final,
        "min": {key: float(np.min(cols[key])) for key in KEYS},
        "max": {key: float(np.max(cols[key])) for key in KEYS},
        "verdict": "complete collapse",
        "verdict_reason": "variance fell to 0.001 of its step-0 value (limit 0.001)",
    }
    (path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return path
