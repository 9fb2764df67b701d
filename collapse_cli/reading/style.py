"""The one look of every figure: colours, sizes, the Agg canvas, log axes that read, and
the grey reference lines, bands and notes that say what a line or a span means."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")
DPI = 100
# Okabe & Ito (2008): told apart under every common colour-vision deficiency. Yellow goes last
# because it is faint on white.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
DASHES = ["-", "--", ":", "-."]  # past eight runs the colours come round again with a new dash
REF = "0.4"  # reference lines (ceilings, 1/√d, floors) are grey so none is taken for a run
STRUCTURAL = "0.85"  # what is structurally zero: masked heatmap cells, shaded indices
CENTRED = {"ha": "center", "va": "center"}
# Spectra drawn per figure at most: more than its pixels can show (see Run.spectra).
SPECTRUM_ROWS = 2000
PANEL_SIZE = (6.4, 4.0)  # inches: a figure of one panel


def overview_size(cols: int) -> tuple[float, float]:
    """Inches of a run's overview: two rows of ``cols`` panels."""
    return (16 * cols / 3, 8.5)


OVERVIEW_MARGINS = {"left": 0.05, "right": 0.985, "top": 0.91, "wspace": 0.22, "hspace": 0.32}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The one look of every figure the project draws."""
    import matplotlib
    from cycler import cycler

    rc = {
        "axes.prop_cycle": cycler(color=OKABE_ITO),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
        # A title at a fixed height (1.0 = the top of the axes, plus axes.titlepad) instead of
        # matplotlib's automatic placement, which lays out every tick label of the axes and
        # its siblings once more at each draw to find what the title might collide with, over
        # half of the drawing time of a figure. Nothing is drawn above an axes here (ticks and
        # labels sit below and left; see `new_figure`), so the title lands where it did.
        "axes.titley": 1.0,
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "legend.frameon": False,
        "lines.linewidth": 1.6,
        "image.cmap": "viridis",
        "figure.dpi": DPI,
    }
    with matplotlib.rc_context(rc):
        yield


def new_figure(rows: int, cols: int, size: tuple[float, float], **margins: float) -> Figure:
    """A Figure on the Agg canvas. Margins are fixed rather than solved by a layout engine,
    which would double the drawing time of a figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    _canvas_class()(fig)
    fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(**{"left": 0.13, "right": 0.96, "bottom": 0.13, "top": 0.9, **margins})
    return fig


_CANVAS: list[type] = []  # the class below, made once matplotlib is imported
_RENDERERS: dict[tuple[int, int, float], Any] = {}  # one per pixel size, shared by all figures


def _canvas_class() -> type:
    """An Agg canvas whose renderer is shared by every figure of the same pixel size.

    matplotlib caches a text's measured size and each parsed mathtext label (the 10⁻³ of a
    log axis) per renderer, and gives every figure a renderer of its own: each figure measured
    and parsed again the tick labels the figure before it had already. Sharing the renderer
    shares those caches. Figures are drawn one at a time and every draw starts by clearing the
    renderer, so what each figure shows is unchanged."""
    if not _CANVAS:
        from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

        class SharedRendererCanvas(FigureCanvasAgg):
            def get_renderer(self) -> Any:
                w, h = self.get_width_height(physical=True)
                key = (w, h, self.figure.dpi)
                if key not in _RENDERERS:
                    if len(_RENDERERS) >= 8:  # a pixel buffer each: keep the few sizes in use
                        _RENDERERS.pop(next(iter(_RENDERERS)))
                    _RENDERERS[key] = RendererAgg(w, h, self.figure.dpi)
                self.renderer, self._lastKey = _RENDERERS[key], key
                return self.renderer

        _CANVAS.append(SharedRendererCanvas)
        # A renderer's cache of parsed mathtext holds font objects reading their files through
        # this process' open file handles; a forked copy that used them would move the file
        # offsets both processes share and garble the other's glyphs. A copy starts afresh.
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_RENDERERS.clear)
    return _CANVAS[0]


# --------------------------------------------------------------------------- data


def log_if_positive(ax: Axes, *ys: np.ndarray) -> None:
    """Log y only when there is something positive to show (else matplotlib warns and blanks)."""
    import numpy as np

    if any(np.any(np.isfinite(y) & (y > 0)) for y in ys):
        ax.set_yscale("log")


def readable_log_ticks(fig: Figure) -> None:
    """Tick labels a reader can read on every log axis of ``fig``, set once its limits are
    final: within one decade every tick as a plain number (0.35, 0.4), within two the decades
    and the 2s and 5s between them, beyond that matplotlib's powers of ten."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def plain(v: float, _: int) -> str:
        return f"{v:.3g}"

    def twos_and_fives(v: float, _: int) -> str:
        mantissa = f"{v:.0e}"[0]
        return plain(v, 0) if mantissa in "25" else ""

    for ax in fig.axes:
        if ax.get_yscale() != "log":
            continue
        low, high = ax.get_ylim()
        if not 0 < low < high:
            continue
        if high < 10 * low:
            ax.yaxis.set_major_formatter(FuncFormatter(plain))
            ax.yaxis.set_minor_formatter(FuncFormatter(plain))
        elif high < 100 * low:
            ax.yaxis.set_major_formatter(FuncFormatter(plain))
            ax.yaxis.set_minor_formatter(FuncFormatter(twos_and_fives))
        else:
            ax.yaxis.set_minor_formatter(NullFormatter())
            _marks_for_minor_ticks(ax)


def _marks_for_minor_ticks(ax: Axes) -> None:
    """The unlabelled minor ticks of a wide log axis drawn as one line of tick marks.

    matplotlib makes a `Tick` (five artists, copied property by property from the first) for
    every tick it draws, and a log axis over many decades has eight minor ticks a decade: 56
    to 72 per axis, four in five of all the ticks of a run's figures and most of their drawing
    time (docs/performance.md, h). Unlabelled, each is only its mark, so the marks are drawn as
    the points of one `Line2D` styled as the axis' own minor tick line (the same marker, size,
    width, colour and transform, at the locations the axis would have drawn) and the axis
    draws no minor ticks. Called once the limits are final; a second call changes nothing."""
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    axis = ax.yaxis
    if isinstance(axis.get_minor_locator(), NullLocator):
        return
    locs = np.asarray(axis.get_minorticklocs())  # what the axis would draw, majors removed
    low, high = sorted(axis.get_transform().transform(axis.get_view_interval()))
    at = axis.get_transform().transform(locs)
    tol = (high - low) * 1e-10  # matplotlib's own test of a tick being in view
    locs = locs[(at >= low - tol) & (at <= high + tol)]
    mark = axis.get_minor_ticks(1)[0].tick1line  # the axis' minor tick line, as it is styled
    marks = Line2D([], [])
    marks.update_from(mark)
    marks.set(data=(np.zeros(len(locs)), locs), clip_on=False, zorder=axis.get_zorder() + 1e-9)
    axis.set_minor_locator(NullLocator())
    ax.add_artist(marks)


def log_floor(*ys: np.ndarray) -> float:
    """A decade below the smallest real value: where structural zeros sit on a log axis."""
    import numpy as np

    pos = np.concatenate([y[np.isfinite(y) & (y > 0)] for y in ys])
    return 10.0 ** (math.floor(math.log10(pos.min())) - 1) if pos.size else 1e-12


def draw_reference(ax: Axes, y: float, label: str, note: bool, ls: str = "--") -> None:
    """A grey reference line; ``note`` also writes its label on it (for overlays, whose
    legends name the runs only)."""
    ax.axhline(y, color=REF, ls=ls, lw=1, label=None if note else label)
    if note:
        write_note(ax, 0.99, y, label, ax.get_yaxis_transform(), ha="right", va="bottom")


def draw_ceiling(ax: Axes, reachable: int | None, ceiling: int | None, note: bool = False) -> None:
    """The rank the embeddings can reach (their rank at step 0: 32 for Linear(32, 128)), and
    min(d, N − 1) too when it differs."""
    if reachable:
        label = f"reachable rank {reachable} (rank at step 0)"
        if ceiling and ceiling != reachable:
            label += f"; min(d, N−1) = {ceiling}"
        draw_reference(ax, reachable, label, note)
        ax.set_ylim(0, max(ax.get_ylim()[1], reachable * 1.1))


def draw_isotropic(
    ax: Axes, d: int | None, *ys: np.ndarray, threshold: float | None = None, note: bool = False
) -> None:
    """std_l2's references: 1/√d, a cloud spread over the sphere, and the verdict's complete
    collapse at ``threshold``/√d (log.verdict.complete_std_l2)."""
    import numpy as np

    top = max([float(np.nanmax(y, initial=0)) for y in ys] + [1 / math.sqrt(d) if d else 0])
    if d:
        draw_reference(ax, 1 / math.sqrt(d), f"1/√d = {1 / math.sqrt(d):.3g} (spread out)", note)
        if threshold:
            at = threshold / math.sqrt(d)
            text = f"complete collapse below {at:.2g} (std_l2·√d < {threshold:g})"
            draw_reference(ax, at, text, note, ls=":")
    ax.set_ylim(0, max(ax.get_ylim()[1], top * 1.2 or 1))


def write_note(ax: Axes, x: float, y: float, text: str, transform: Any, **kw: Any) -> None:
    """Small grey text: what a reference line, a shaded span or an empty panel means."""
    ax.text(x, y, text, transform=transform, **{"color": REF, "fontsize": 7, **kw})


def draw_empty(ax: Axes, title: str, why: str) -> None:
    write_note(ax, 0.5, 0.5, why, ax.transAxes, fontsize=9, **CENTRED)
    ax.set(title=title, xticks=[], yticks=[])
