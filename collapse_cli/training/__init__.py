"""The write side: building a run's parts, the training loop, checkpoints, and the life of one
run (signals, summary, final figures). It writes run folders through ``rundir``."""

from .lifecycle import Resumable, open_resume, resume_run, run_experiment

__all__ = ["Resumable", "open_resume", "resume_run", "run_experiment"]
