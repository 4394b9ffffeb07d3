"""Checks that a drawn figure tells the truth at a glance, in display coordinates.

- :func:`texts_outside`: the visible texts (titles, axis labels, tick labels,
  legend entries, annotations) whose drawn extent leaves the canvas;
- :func:`legends_over_data`: the legends whose box covers a data artist (a
  line's path, scatter points, bars, bands, link segments) inside an axes;
- :func:`repeated_legend_styles`: legend entries drawn alike (same colour,
  line style, marker, width and hatch), so the reader cannot tell them apart;
- :func:`figure_problems`: all three, as one list of readable lines.

Everything is measured after a full draw with the Agg renderer at the figure's
own size and dpi, i.e. what ``savefig`` writes without ``bbox_inches``.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection, PathCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

__all__ = ["texts_outside", "legends_over_data", "repeated_legend_styles", "figure_problems"]

_SLACK = 1.0  # pixels: anti-aliasing at the canvas edge is not a clipped text


def _renderer(figure: Figure):
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else None
    canvas = canvas or FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def _hidden_texts(figure: Figure) -> set[int]:
    """Texts matplotlib keeps but does not draw: ticks of hidden axes and beyond the range."""
    hidden = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not ax.axison or not axis.get_visible():
                hidden |= {id(text) for text in axis.findobj(Text)}
                continue
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * abs(high - low)
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - slack <= tick.get_loc() <= high + slack:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def texts_outside(figure: Figure, renderer=None) -> list[str]:
    """The visible texts whose drawn extent leaves the canvas."""
    renderer = renderer or _renderer(figure)
    box = figure.bbox
    hidden = _hidden_texts(figure)
    outside = []
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        extent = text.get_window_extent(renderer)
        if (
            extent.x0 < box.x0 - _SLACK
            or extent.y0 < box.y0 - _SLACK
            or extent.x1 > box.x1 + _SLACK
            or extent.y1 > box.y1 + _SLACK
        ):
            outside.append(text.get_text())
    return outside


def _legends(figure: Figure) -> list[Legend]:
    found = [legend for legend in figure.legends if legend.get_visible()]
    found += [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    return [legend for legend in found if legend.get_visible()]


def _covers(artist, box: Bbox) -> bool:
    """Whether a drawn data artist has a point, segment or area inside ``box`` (display)."""
    if isinstance(artist, Line2D):
        path = artist.get_transform().transform_path(artist.get_path())
        return len(path.vertices) > 0 and path.intersects_bbox(box, filled=False)
    if isinstance(artist, Patch):
        path = artist.get_transform().transform_path(artist.get_path())
        return path.intersects_bbox(box, filled=True)
    if isinstance(artist, PathCollection) and len(artist.get_offsets()):
        points = artist.get_offset_transform().transform(artist.get_offsets())
        sizes = artist.get_sizes()
        radius = (sizes.max() ** 0.5) / 2 * artist.figure.dpi / 72 if len(sizes) else 0.0
        grown = box.padded(radius)
        return bool(grown.contains(points[:, 0], points[:, 1]).any())
    if isinstance(artist, Collection):
        transform = artist.get_transform()
        filled = len(artist.get_facecolors()) > 0
        return any(
            transform.transform_path(path).intersects_bbox(box, filled=filled)
            for path in artist.get_paths()
        )
    return False


def _axes_texts(figure: Figure) -> list[Text]:
    """The titles and axis labels of every axes, and the figure's title."""
    texts = [figure._suptitle] if figure._suptitle is not None else []
    for ax in figure.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
    return [text for text in texts if text.get_visible() and text.get_text().strip()]


def legends_over_data(figure: Figure, renderer=None) -> list[str]:
    """``"legend 'title' over <artist> in axes 'title'"`` for every legend that covers data.

    Titles and axis labels count as data here: a legend must not hide them either.
    """
    renderer = renderer or _renderer(figure)
    found = []
    for legend in _legends(figure):
        legend_box = legend.get_window_extent(renderer)
        name = legend.get_title().get_text() or "legend"
        for text in _axes_texts(figure):
            if legend_box.overlaps(text.get_window_extent(renderer)):
                found.append(f"{name!r} over the text {text.get_text()!r}")
        for ax in figure.axes:
            overlap = Bbox.intersection(legend_box, ax.get_window_extent(renderer))
            if overlap is None or overlap.width <= 0 or overlap.height <= 0:
                continue  # clipped to the axes: nothing drawn outside it can be covered
            for artist in [*ax.lines, *ax.patches, *ax.collections]:
                if artist.get_visible() and _covers(artist, overlap):
                    found.append(f"{name!r} over {type(artist).__name__} "
                                 f"{artist.get_label()!r} in axes {ax.get_title()!r}")  # fmt: skip
    return found


def _style(handle) -> tuple | None:
    """How a legend entry looks: colour, line style, marker, width and hatch."""
    if isinstance(handle, Line2D):
        return ("line", to_hex(handle.get_color(), keep_alpha=True), str(handle.get_linestyle()),
                str(handle.get_marker()), round(float(handle.get_linewidth()), 2),
                to_hex(handle.get_markerfacecolor(), keep_alpha=True))  # fmt: skip
    if isinstance(handle, Patch):
        face, edge = handle.get_facecolor(), handle.get_edgecolor()
        return ("patch", to_hex(face, keep_alpha=True), to_hex(edge, keep_alpha=True),
                str(handle.get_hatch()))  # fmt: skip
    if isinstance(handle, Collection) and len(handle.get_facecolors()):
        paths = handle.get_paths()
        return ("markers", to_hex(handle.get_facecolors()[0], keep_alpha=True),
                str(paths[0].vertices.round(3).tolist()) if paths else "")  # fmt: skip
    return None


def repeated_legend_styles(figure: Figure) -> list[str]:
    """Pairs of entries of one legend that are drawn exactly alike."""
    found = []
    for legend in _legends(figure):
        seen: dict[tuple, str] = {}
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=False):
            style = _style(handle)
            if style is None:
                continue
            label = text.get_text()
            if style in seen:
                found.append(f"{seen[style]!r} and {label!r} look the same")
            else:
                seen[style] = label
    return found


def figure_problems(figure: Figure) -> list[str]:
    """Texts off the canvas, legends over data and look-alike legend entries."""
    renderer = _renderer(figure)
    problems = [f"text outside the canvas: {text!r}" for text in texts_outside(figure, renderer)]
    problems += [f"legend over data: {item}" for item in legends_over_data(figure, renderer)]
    problems += [f"legend entries alike: {item}" for item in repeated_legend_styles(figure)]
    return problems
