"""The life of one run: create its folder, train under signal handlers, then write its summary,
its figures and its final meta; or resume it from its checkpoint into the same folder."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__, rundir
from ..config import RunConfig, load_config, resolved
from ..errors import CollapseError, ConfigError, RunError
from ..metrics import knn_chance, knn_collapsed
from ..summary import build_summary, near_collapse_eps
from ..threads import torch_threads
from ..yamlfile import dump_yaml
from .build import build
from .checkpoint import load_checkpoint
from .distributed import NoFiles, World, check_split, joined
from .loop import Reporter, Result, Silent, Stop, train
from .stopping import StopOn
from .taps import measured
from .tensorboard import TensorBoardWriter

ConfigSource = str | Path | dict[str, Any] | RunConfig


def run_experiment(
    config: ConfigSource,
    overrides: list[str] | None = None,
    *,
    runs_dir: str | Path = "runs",
    reporter: Reporter | None = None,
    command: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train the configured model and return ``(run folder, summary)``.

    ``config`` is a YAML path, a dict of the same shape or a loaded RunConfig; ``overrides``
    are ``key.path=value`` strings. Every problem with the config raises ConfigError before any
    folder is created. ``summary["status"]`` says how the run ended: completed, interrupted or
    diverged.

    Example (in a notebook)::

        path, summary = run_experiment("configs/collapse.yaml", ["train.steps=100"])
        summary["verdict"]
    """
    cfg = load_config(config, overrides)
    with joined(cfg.device) as world:  # one process, or one rank of several (torchrun)
        parts = build(cfg)
        check_split(cfg, world.size, parts.data.x.shape[0])
        # Rank 0 alone creates the folder; every rank learns its path.
        path, meta = world.from_main(lambda: _create(cfg, runs_dir, world, command))
        return path, _execute(cfg, parts, world, path, meta, reporter)


def _create(
    cfg: RunConfig, runs_dir: str | Path, world: World, command: str | None
) -> tuple[Path, dict[str, Any]]:
    """A new run folder with its config.yaml and its first meta.json."""
    device = world.device
    path = rundir.create_run_dir(runs_dir, cfg.name or "run")
    meta = rundir.new_meta(
        path.name,
        cfg.name,
        command=command or " ".join(sys.argv),
        seed=cfg.seed,
        device=str(device),
        device_name=_device_name(device),
        versions={"torch": torch.__version__, "collapse_cli": __version__},
    )
    meta |= world.meta()
    try:
        rundir.write_atomic(path / rundir.CONFIG, dump_yaml(resolved(cfg)))
        rundir.write_json(path / rundir.META, meta)
    except OSError as e:
        raise CollapseError(f"{path}: cannot write the run folder ({e.strerror})") from None
    return path, meta


RESUME_KEYS = ("train.steps",)  # what --resume may change: the run's length


@dataclass
class Resumable:
    """A run folder checked and ready to continue: its config (with the new length, if one was
    asked for), its meta, the checkpoint's state and the step that state was saved after."""

    path: Path
    cfg: RunConfig
    old_steps: int
    meta: dict[str, Any]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def open_resume(
    run: str | Path, overrides: list[str] | None = None, *, runs_dir: str | Path = "runs"
) -> Resumable:
    """Check that ``run`` can be resumed and load what it needs; the config is read once.

    ``overrides`` may only set ``train.steps``: a new length extends (or shortens) the run, a
    completed one included.
    """
    path = rundir.resolve_run(run, runs_dir)
    meta = rundir.read_json(path / rundir.META)
    if meta is None:
        raise ConfigError(f"{path / rundir.META}: missing or unreadable; is this a run folder?")
    if rundir.writer_state(meta) == "alive" and meta.get("pid") != os.getpid():
        raise ConfigError(
            f"{path}: still running (process {meta['pid']} on this host); stop it before resuming"
        )
    cfg = load_config(path / rundir.CONFIG)
    old_steps = cfg.train.steps
    cfg = _with_length(cfg, overrides or [])
    if meta.get("status") == "stopped":  # train.stop_on ended it: it is over, by its own rule
        at = (rundir.read_json(path / rundir.SUMMARY) or {}).get("stopped_at")
        raise ConfigError(
            f"{path}: train.stop_on stopped the run at step {at}; there is nothing to resume "
            f"(to train it on regardless: collapse run {path / rundir.CONFIG} train.stop_on=null)"
        )
    if meta.get("status") == "completed" and cfg.train.steps <= old_steps:
        raise ConfigError(
            f"{path}: the run has completed its {old_steps} steps; there is nothing to resume "
            f"(to extend it: --resume RUN train.steps=N with N > {old_steps})"
        )
    if not (path / rundir.CHECKPOINT).is_file():
        raise ConfigError(
            f"{path}: no {rundir.CHECKPOINT} to resume from (a run saves one when it is "
            "interrupted, and every train.checkpoint_every steps)"
        )
    try:
        state = load_checkpoint(path / rundir.CHECKPOINT)
    except Exception as e:
        raise ConfigError(
            f"{path / rundir.CHECKPOINT}: cannot load it ({type(e).__name__})"
        ) from None
    job = Resumable(path, cfg, old_steps, meta, state)
    if cfg.train.steps < job.step:
        raise ConfigError(
            f"{path}: train.steps={cfg.train.steps} ends before the checkpoint, saved after "
            f"{job.step} steps"
        )
    return job


def _with_length(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """``cfg`` with the one override --resume takes, ``train.steps=N``, validated."""
    for item in overrides:
        if item.partition("=")[0].strip() not in RESUME_KEYS:
            raise ConfigError(
                f"{item!r}: --resume takes only train.steps=N (to change the run's length); "
                "every other setting is the run's own"
            )
    return load_config(cfg, overrides) if overrides else cfg


def resume_run(
    run: str | Path | Resumable,
    overrides: list[str] | None = None,
    *,
    runs_dir: str | Path = "runs",
    reporter: Reporter | None = None,
    command: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its ``checkpoint.pt`` into the same folder.

    Metrics logged after the checkpoint are dropped and recomputed, so on the CPU a resumed run
    ends with exactly the metrics of an uninterrupted one. ``overrides`` may only set
    ``train.steps`` (see `open_resume`); the folder's config.yaml is then updated, and the
    metrics equal those of a run started with that length, except for schedules spread over
    ``train.steps`` (byol's and dino's cosine momentum), which follow the new length only from
    the resumed step on. ``run`` may be a `Resumable` already opened.
    """
    job = run if isinstance(run, Resumable) else open_resume(run, overrides, runs_dir=runs_dir)
    cfg, path, meta = job.cfg, job.path, job.meta
    # Every rank has read the run (open_resume) before rank 0 changes it: joined's barrier.
    with joined(cfg.device) as world:
        parts = build(cfg)
        check_split(cfg, world.size, parts.data.x.shape[0])
        prior = world.on_main(lambda: _reopen(job, world, command))
        return path, _execute(
            cfg, parts, world, path, meta, reporter, resume=job.state, prior=prior
        )


def _reopen(job: Resumable, world: World, command: str | None) -> list[dict[str, Any]]:
    """Truncate the run to its checkpoint and mark it running again; returns the rows kept."""
    cfg, path, meta, step = job.cfg, job.path, job.meta, job.step
    # Rows logged after the checkpoint are recomputed. When the length changes, so is the row
    # logged only because it was the old last step, as a run of the new length would not log it.
    changed = cfg.train.steps != job.old_steps
    last = job.old_steps - 1 if changed and (job.old_steps - 1) % cfg.log.every else None

    def kept(r: dict[str, Any]) -> bool:
        return r.get("step", step) < step and r.get("step") != last

    prior = rundir.keep_rows(path / rundir.METRICS, kept)
    rundir.keep_rows(path / rundir.SPECTRUM, kept)
    if changed:
        rundir.write_atomic(path / rundir.CONFIG, dump_yaml(resolved(cfg)))
    meta.update(status="running", ended=None, **rundir.process_fields(), **world.meta())
    entry = {"at": rundir.now(), "from_step": step, "command": command or " ".join(sys.argv)}
    entry |= {"steps": [job.old_steps, cfg.train.steps]} if changed else {}
    entry |= world.meta()
    meta.setdefault("resumed", []).append(entry)
    rundir.write_json(path / rundir.META, meta)
    return prior


def _execute(
    cfg: RunConfig,
    parts: Any,
    world: World,
    path: Path,
    meta: dict[str, Any],
    reporter: Reporter | None,
    *,
    resume: dict[str, Any] | None = None,
    prior: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train into ``path`` under signal handlers, then write the summary, the figures and the
    final meta. With several ranks, rank 0 alone writes and reports; every rank returns the
    summary. A rank that fails ends the run as failed, with the rank and its error."""
    stop = Stop()
    main = world.main
    # Saved every checkpoint_every steps, and on interrupt; by rank 0 alone.
    checkpoint = path / rundir.CHECKPOINT if main else None
    writer: Any = NoFiles()
    if main:
        writer = TensorBoardWriter(path) if cfg.log.tensorboard else rundir.RunWriter(path)
    # In a distributed run every signal only asks to stop, so that the ranks stop together;
    # the handlers stay while a failure is recorded (torchrun signals the ranks that remain).
    threads = torch_threads(cfg.train.threads)
    with _signals(stop, twice=not world.distributed):
        try:
            with _deterministic(cfg.train.deterministic), threads:
                result = train(
                    cfg, parts, world.device, writer, (reporter if main else None) or Silent(),
                    stop=stop, checkpoint=checkpoint, resume=resume, world=world,
                    stop_on=StopOn.from_config(cfg, prior),
                )  # fmt: skip
        except OSError as e:
            cause = f"cannot write to the run folder ({e.strerror})"
            error, rank = world.failure(cause, path.name)
            _fail(path, meta, error, world, rank)
            raise RunError(f"{path}: {error}") from None
        except Exception as e:
            error, rank = world.failure(f"{type(e).__name__}: {e}", path.name)
            _fail(path, meta, error, world, rank)
            raise RunError(f"{path}: the run failed: {error}") from e
        finally:
            writer.close()
    return world.from_main(lambda: _finish(cfg, parts, path, meta, result, prior, reporter))


def _finish(
    cfg: RunConfig,
    parts: Any,
    path: Path,
    meta: dict[str, Any],
    result: Result,
    prior: list[dict[str, Any]] | None,
    reporter: Reporter | None,
) -> dict[str, Any]:
    """The summary, the figures and the final meta of a run that ended (rank 0)."""
    rows = (prior or []) + result.rows
    spectra = rundir.read_jsonl(path / rundir.SPECTRUM)[-1:] if not result.dim else []
    labels = parts.data.labels_test
    knn_logged = any("knn_acc" in r for r in rows)
    summary = build_summary(
        rows,
        run_id=path.name,
        name=cfg.name,
        status=result.status,
        loss=cfg.loss.name,
        steps=cfg.train.steps,
        steps_done=result.steps_done,
        batch_size=result.batch_size,
        dim=result.dim or len((spectra or [{}])[0].get("eigenvalues", [])),
        thresholds=cfg.log.verdict.model_dump(),
        wall_time_s=result.wall_time,
        knn_chance=knn_chance(labels) if knn_logged else None,
        recall_chance=1 / len(parts.data.pairs[0]) if parts.data.pairs is not None else None,
        diverged_at=result.diverged_at,
        dimensions=result.dims,
        knn_collapsed=knn_collapsed(parts.data.labels, labels) if knn_logged else None,
        eps=near_collapse_eps(cfg.encoder.params()),
        stop_reason=result.stop_reason,
    )
    summary["measured_at"] = measured(cfg, parts.encoder, parts.objective)  # log.at, resolved
    if cfg.log.embeddings and result.status != "diverged":
        summary["embeddings"] = _save_embeddings(path, parts, cfg.log.embeddings)
    if cfg.log.csv:
        from ..reading import load_run
        from ..reading.export import write_metrics_csv

        rundir.write_json(path / rundir.SUMMARY, summary)
        write_metrics_csv(load_run(path))
    finish_run(path, meta, summary, plots=cfg.log.figures == "end", reporter=reporter)
    return summary


def finish_run(
    path: Path,
    meta: dict[str, Any],
    summary: dict[str, Any],
    *,
    plots: bool = True,
    reporter: Any = None,
    **fields: Any,
) -> None:
    """The end of a run, whatever wrote it: summary.json, the figures when anything was
    logged (and ``plots``), then meta.json ended with the summary's status (and ``fields``,
    e.g. ``error``)."""
    rundir.write_json(path / rundir.SUMMARY, summary)
    if summary["final"] and plots:
        if reporter is not None and hasattr(reporter, "note"):
            reporter.note("drawing figures…")
        _plot(path, meta)
    rundir.write_json(path / rundir.META, rundir.ended(meta, summary["status"], **fields))


def _save_embeddings(path: Path, parts: Any, limit: int) -> dict[str, Any]:
    """The trained encoder's output on the held-out split (the training data when there is
    none), at most ``limit`` rows, as embeddings.npy (and embedding_labels.npy), so that
    ``collapse inspect`` and any other tool can read it. Returns what summary.json says of it."""
    import numpy as np

    from ..encoders import embed

    data = parts.data
    held_out = data.x_test is not None
    x, y = (data.x_test, data.labels_test) if held_out else (data.x, data.labels)
    z = embed(parts.encoder, x[:limit]).detach().float().cpu().numpy()  # (rows, d)
    saved = {"file": rundir.EMBEDDINGS, "split": "held-out" if held_out else "training"}
    arrays = {rundir.EMBEDDINGS: z}
    if y is not None:
        arrays[rundir.EMBEDDING_LABELS] = y[:limit].numpy()
        saved["labels"] = rundir.EMBEDDING_LABELS
    for name, array in arrays.items():
        tmp = path / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path / name)
    return saved | {"rows": int(z.shape[0]), "dim": int(z.shape[1])}


def _plot(path: Path, meta: dict[str, Any]) -> None:
    """The standard figures into ``plots/``, by the helper process `collapse run` started
    (reading/drawer.py) or else here; a figure that fails never costs the run."""
    from ..reading.drawer import take
    from ..reading.figures import plot_run

    try:
        drawer = take()
        if drawer is None or drawer.draw(path) is None:
            plot_run(path)
    except Exception as e:  # recorded; `collapse plot` can redo it
        meta["plots_error"] = f"{type(e).__name__}: {e}"


def _fail(
    path: Path, meta: dict[str, Any], error: str, world: World, rank: int | None = None
) -> None:
    """meta.json marked failed with the error (rank 0 writes it; ``failed_rank`` with ranks)."""
    if not world.main:
        return
    fields = {"error": error} | ({"failed_rank": rank} if rank is not None else {})
    with contextlib.suppress(OSError):
        rundir.write_json(path / rundir.META, rundir.ended(meta, "failed", **fields))


@contextlib.contextmanager
def on_signals(handler: Any) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while the block runs, then the previous handlers
    again. Only the main thread can install handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals(stop: Stop, *, twice: bool = True) -> Iterator[None]:
    """SIGINT and SIGTERM ask the loop to stop after the current step; a second Ctrl-C
    interrupts at once (unless ``twice`` is False)."""

    def handler(signum: int, frame: Any) -> None:
        stop.signal = signal.Signals(signum).name
        if twice:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    with on_signals(handler):
        yield


@contextlib.contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    """torch's deterministic algorithms (and cuBLAS's fixed workspace) for the run, if asked."""
    if not on:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
