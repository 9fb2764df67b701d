"""One run folder as Python data (``load_run``): config, meta, metrics, spectra and summary.

Imports neither torch nor matplotlib, so it reads runs fast and reads runs made by older versions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CollapseError, ConfigError, RunNotFoundError
from ..rundir import (
    CONFIG,
    META,
    METRICS,
    SPECTRUM,
    SUMMARY,
    is_run_dir,
    read_json,
    read_jsonl,
    read_line,
    writer_state,
)
from ..summary import build_summary, near_collapse_eps
from ..yamlfile import read_yaml

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Spectrum:
    """Sorted covariance spectra: ``eigenvalues[k]`` (λ₁ ≥ … ≥ λ_d) was logged at ``steps[k]``."""

    steps: list[int] = field(default_factory=list)
    eigenvalues: list[list[float | None]] = field(default_factory=list)
    _array: Any = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.steps)

    def array(self) -> Any:
        """(steps, d) float64 NumPy array (made once); null values and short rows become NaN."""
        import numpy as np

        if self._array is None:
            d = max((len(e) for e in self.eigenvalues), default=0)
            if not self.eigenvalues:  # log.spectrum: false, or nothing logged yet
                self._array = np.empty((0, 0))
            elif all(len(e) == d for e in self.eigenvalues):
                self._array = np.array(self.eigenvalues, dtype=float).reshape(-1, d)
            else:  # rows of mixed width: never written by collapse, but do not crash on them
                self._array = np.full((len(self.eigenvalues), d), np.nan)
                for k, e in enumerate(self.eigenvalues):
                    self._array[k, : len(e)] = np.array(e, dtype=float)
        return self._array


@dataclass
class Run:
    """A run folder read back. ``metrics``, ``spectrum`` and ``summary`` are read on first use,
    so listing many runs reads only their small files."""

    path: Path
    config: dict[str, Any]
    meta: dict[str, Any]
    _samples: dict[int, Spectrum] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def id(self) -> str:
        return str(self.meta.get("id") or self.path.name)

    @property
    def status(self) -> str:
        """meta.json's status, except ``died`` for a run whose meta.json still says ``running``
        but whose process on this host is gone (meta.json itself is left as it is)."""
        if writer_state(self.meta) == "gone":
            return "died"
        return str(self.meta.get("status") or "unknown")

    @property
    def finished(self) -> bool:
        """True once the run wrote its summary.json (a run still going or that died has none)."""
        return self._saved_summary is not None

    @cached_property
    def _saved_summary(self) -> dict[str, Any] | None:
        return read_json(self.path / SUMMARY)

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        """One dict per logged step; a torn last line (the run died mid-write) is skipped."""
        return read_jsonl(self.path / METRICS)

    @cached_property
    def spectrum(self) -> Spectrum:
        """Every logged spectrum (a torn last line is skipped)."""
        return _spectrum(read_jsonl(self.path / SPECTRUM))

    def spectra(self, max_rows: int | None = None) -> Spectrum:
        """The spectrum, or at most ``max_rows`` evenly spaced rows of it (the first and the last
        complete one included): what a figure a few hundred pixels wide can show, read in a
        fraction of the time a long run's whole file takes to parse."""
        if max_rows is None or "spectrum" in self.__dict__:
            return self.spectrum
        if max_rows not in self._samples:
            try:
                lines = (self.path / SPECTRUM).read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) <= max_rows:
                return self.spectrum
            picks = sorted({round(k * (len(lines) - 1) / (max_rows - 1)) for k in range(max_rows)})
            rows = [r for r in (read_line(lines[i]) for i in picks) if "eigenvalues" in r]
            last = next((r for r in map(read_line, reversed(lines)) if "eigenvalues" in r), None)
            if last and (not rows or rows[-1].get("step") != last.get("step")):  # torn last line
                rows.append(last)
            self._samples[max_rows] = _spectrum(rows)
        return self._samples[max_rows]

    @cached_property
    def summary(self) -> dict[str, Any]:
        """summary.json, or for a run without one the same shape derived from its metrics (no
        verdict: the run has not ended)."""
        return self._saved_summary or self._derived_summary()

    def column(self, key: str) -> list[Any]:
        """The values of ``key`` at every logged step; None where it is absent or was non-finite."""
        return [row.get(key) for row in self.metrics]

    @property
    def steps(self) -> list[int]:
        return self.column("step")

    def frame(self) -> Any:
        """The metrics as a pandas DataFrame indexed by step (pandas is optional)."""
        try:
            import pandas as pd
        except ImportError:
            raise CollapseError(
                "Run.frame() needs pandas, which is not installed: pip install pandas "
                "(or use run.metrics / run.column(key), which need nothing)"
            ) from None
        df = pd.DataFrame.from_records(self.metrics)
        return df.set_index("step") if "step" in df.columns else df

    @property
    def dim(self) -> int | None:
        """The embedding dimension d (from the summary, else the width of the spectrum)."""
        saved = self._saved_summary or {}
        if saved.get("dim"):
            return int(saved["dim"])
        if "spectrum" in self.__dict__:  # already read
            return max((len(e) for e in self.spectrum.eigenvalues), default=None)
        # One line tells the width: a running run's list row must not parse its whole spectrum.
        with contextlib.suppress(OSError), open(self.path / SPECTRUM) as f:
            first = read_line(f.readline())
            if isinstance(first.get("eigenvalues"), list):
                return len(first["eigenvalues"])
        return None

    @property
    def batch_size(self) -> int | None:
        """N, the number of embeddings each metric was computed on."""
        saved = self._saved_summary or {}
        if saved.get("batch_size"):
            return int(saved["batch_size"])
        # Full-batch training (train.batch_size null) uses every sample of the data set.
        n = config_value(self.config, "train.batch_size") or config_value(self.config, "data.n")
        return int(n) if isinstance(n, int) else None

    @property
    def rank_ceiling(self) -> int | None:
        """min(d, N − 1): the largest rank a centred (N, d) batch can have."""
        d, n = self.dim, self.batch_size
        return min(d, n - 1) if d and n else d

    @property
    def reachable_rank(self) -> int | None:
        """The rank the embeddings can reach: the rank they had at step 0 (32 for the article's
        Linear(32, 128), whatever d), which the verdict also compares against; min(d, N − 1)
        when no rank was logged."""
        first = self.metrics[0].get("rank") if self.metrics else None
        rank = self.summary.get("initial_rank") or first
        return int(rank) if isinstance(rank, (int, float)) and rank > 0 else self.rank_ceiling

    @property
    def loss_parts(self) -> list[str]:
        """The loss's own logged parts (vicreg's terms, barlow_twins' diagonals, ...): the
        numbers of the first row that are not in the metric catalogue (nor a metric of log.at's
        further places, ``encoder/effective_rank``)."""
        from ..catalogue import AT_SEPARATOR, BY_KEY

        first = self.metrics[0] if self.metrics else {}
        return [
            k for k, v in first.items()
            if k not in BY_KEY and k not in ("step", "time") and isinstance(v, (int, float))
            and AT_SEPARATOR not in k
        ]  # fmt: skip

    def thresholds(self) -> dict[str, float]:
        """The verdict thresholds the run was judged with (log.verdict), defaults filled in."""
        from ..verdict import DEFAULT_THRESHOLDS

        given = config_value(self.config, "log.verdict")  # a Monitor's config is the user's
        given = given if isinstance(given, dict) else {}
        return DEFAULT_THRESHOLDS | {
            k: v for k, v in given.items() if k in DEFAULT_THRESHOLDS and isinstance(v, float)
        }

    # ------------------------------------------------------------------ as NumPy arrays

    def array(self, key: str) -> np.ndarray:
        """``column(key)`` as float64; absent and non-finite values are NaN."""
        import numpy as np

        return np.array(self.column(key), dtype=float)

    def structural_min_eig(self) -> np.ndarray:
        """Per logged step: True where λ_min is structurally zero (the rank is below d)."""
        import numpy as np

        rank, d = self.array("rank"), self.dim
        return rank < d if d else np.zeros(len(rank), bool)

    def structural_spectrum(
        self, max_rows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps (T,), eigenvalues (T, d), structural (T, d)) of ``spectra(max_rows)``: λ_i is
        structurally zero when i is beyond the numerical rank logged at that step, or when it
        is not positive."""
        import numpy as np

        spectrum = self.spectra(max_rows)
        eigs = spectrum.array()
        steps = np.array(spectrum.steps, dtype=float)
        ms, mr = self.array("step"), self.array("rank")
        rank = np.full(len(steps), np.nan)
        if len(ms):  # the rank logged at each spectrum step, matched by step (no Python loop)
            order = np.argsort(ms, kind="stable")
            ms, mr = ms[order], mr[order]
            idx = np.clip(np.searchsorted(ms, steps), 0, len(ms) - 1)
            rank = np.where(ms[idx] == steps, mr[idx], np.nan)
        beyond = np.arange(eigs.shape[1])[None, :] >= rank[:, None]  # NaN rank compares False
        return steps, eigs, beyond | ~(eigs > 0)

    def smallest_nonzero(self, max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, λ_r) with r the numerical rank: the smallest eigenvalue that is not
        structurally zero (λ_min itself at full rank). When λ_min is stuck at 0, it moves."""
        steps, eigs, zero = self.structural_spectrum(max_rows)
        if len(steps):
            r = (~zero).sum(axis=1)  # sorted spectra: the non-zero eigenvalues lead
            ok = r > 0
            return steps[ok], eigs[ok, r[ok] - 1]
        real = ~self.structural_min_eig()
        return self.array("step")[real], self.array("min_eig")[real]

    def _derived_summary(self) -> dict[str, Any]:
        rows = self.metrics
        last_step = rows[-1].get("step") if rows else None
        return build_summary(
            rows,
            run_id=self.id,
            name=self.meta.get("name") or self.config.get("name"),
            status=self.status,
            loss=config_value(self.config, "loss.name"),
            steps=config_value(self.config, "train.steps"),
            steps_done=last_step + 1 if isinstance(last_step, int) else 0,
            batch_size=self.batch_size,
            dim=self.dim,
            eps=near_collapse_eps(self.config.get("encoder") or {}),
        )


def _spectrum(rows: list[dict[str, Any]]) -> Spectrum:
    rows = [r for r in rows if isinstance(r.get("eigenvalues"), list)]
    return Spectrum([r.get("step") for r in rows], [r["eigenvalues"] for r in rows])


def config_value(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def load_run(path: str | Path) -> Run:
    """Read a run folder (finished, still going, or died mid-line).

    >>> run = load_run("runs/20250101-120000-infonce")  # doctest: +SKIP
    >>> run.column("effective_rank")[-1], run.summary["verdict"]  # doctest: +SKIP
    """
    path = Path(path)
    if not is_run_dir(path):
        raise RunNotFoundError(f"{path}: not a run folder (no {META})")
    try:
        config = read_yaml(path / CONFIG)
    except ConfigError:
        config = {}  # a run that died before writing its config still has metrics to show
    return Run(path=path, config=config, meta=read_json(path / META) or {})
