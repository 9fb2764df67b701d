"""Standard output and error for the CLI's consoles, without the blanks Rich pads lines with.

Rich pads every cell of a table and every line of a grid to its width; on a terminal that is
invisible (and a live display needs it, to overwrite a longer line), but in a file or a pipe
each line ends in a run of spaces that a diff, a grep or a paper's table shows. Where the
stream is not a terminal, `Trimmed` drops the blanks before each line's end.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_TRAILING = re.compile(r"[ \t]+(?=\n)")


class Trimmed:
    """``sys.stdout`` or ``sys.stderr`` as it is at each write (a test may replace it), with
    the blanks at the end of each line removed unless the stream is a terminal."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._held = ""  # blanks that ended a write: written only if no line end follows

    @property
    def stream(self) -> Any:
        return getattr(sys, self.name)

    def write(self, text: str) -> int:
        stream = self.stream
        if _isatty(stream):
            return stream.write(self._release() + text)
        text = _TRAILING.sub("", self._held + text)
        body = text.rstrip(" \t")
        self._held = text[len(body) :]
        stream.write(body)
        return len(text)

    def flush(self) -> None:
        self.stream.write(self._release())
        self.stream.flush()

    def _release(self) -> str:
        held, self._held = self._held, ""
        return held

    def __getattr__(self, attr: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self.stream, attr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
