"""``log.tensorboard: true``: the run's scalars also go to a TensorBoard event file in the run
folder (``tensorboard/``), for those who watch runs there. Needs the ``tensorboard`` package."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..rundir import TENSORBOARD, RunWriter


def check_available() -> None:
    """Raise the ConfigError of a missing tensorboard package before any folder is made."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "log.tensorboard: needs the tensorboard package: "
            "pip install 'collapse-cli[tensorboard]'"
        )


class TensorBoardWriter(RunWriter):
    """A RunWriter that also adds every finite number of a metrics row as a scalar."""

    def __init__(self, path: Path) -> None:
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(path)
        self._board = SummaryWriter(log_dir=str(path / TENSORBOARD))

    def append_metrics(self, row: dict[str, Any]) -> None:
        super().append_metrics(row)
        step = row.get("step", 0)
        for key, value in row.items():
            number = isinstance(value, (int, float)) and math.isfinite(value)
            if number and key not in ("step", "time"):
                self._board.add_scalar(key, value, step)
        self._board.flush()

    def close(self) -> None:
        super().close()
        self._board.close()
