"""The write side: building a run's parts, the training loop, checkpoints, the life of one run
(signals, summary, final figures), and the Monitor of a user's own loop. It writes run folders
through ``rundir``."""

from .lifecycle import Resumable, open_resume, resume_run, run_experiment
from .monitor import Monitor

__all__ = ["Monitor", "Resumable", "open_resume", "resume_run", "run_experiment"]
