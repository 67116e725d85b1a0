"""Server-rendered bar charts as standalone SVG: no script, no stylesheet, no external fetch.

The strict CSP of the web face forbids scripts and inline styles, so the dashboard's plots are
drawn here as plain SVG with presentation attributes (fill, stroke), which CSP does not govern.
Every bar carries a ``<title>`` (the browser's hover text) and ``data-label``/``data-value``,
and the chart has an accessible name and a ``<desc>`` text alternative.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

Label = str | dt.datetime | dt.date
Point = tuple[Label, float]

# Characters XML 1.0 cannot carry at all, escaped or not: C0 controls other than tab, newline
# and carriage return, lone surrogates, U+FFFE and U+FFFF. They become U+FFFD.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WHITESPACE_REFS = str.maketrans({"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})
# A label longer than this is cut in the tick text (the full text stays in the bar's title).
_TICK_CHARS = 16


@dataclass(frozen=True, slots=True)
class Frame:
    """The chart's geometry in SVG user units (the viewBox; CSS scales it to the page)."""

    width: int = 640
    height: int = 220
    left: int = 44
    right: int = 12
    top: int = 12
    bottom: int = 36

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


def xml_text(value: object) -> str:
    """Text safe inside an element or a double-quoted attribute of an XML or HTML document.
    Tab, newline and carriage return become character references: a parser would otherwise
    normalise them (to spaces in attributes, CR to LF everywhere)."""
    text = escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)
    return text.translate(_WHITESPACE_REFS)


def label_text(label: Label, time_format: str = "%H:%M") -> str:
    """How a point's label reads: datetimes by ``time_format``, dates as ISO, the rest as given."""
    if isinstance(label, dt.datetime):
        return label.strftime(time_format)
    if isinstance(label, dt.date):
        return label.isoformat()
    return label


def number_text(value: float) -> str:
    """Counts as integers; other values with three significant digits."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (1 for 0), so the
    axis ticks at 0, half and the top read as round numbers."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10.0**exponent
        if candidate >= value:
            return candidate
    return 10.0 ** (exponent + 1)  # only for values so small that 10**exponent underflows


def _tick_indexes(count: int, most: int = 6) -> list[int]:
    """Which bars get an x-axis label: evenly spread, always the first and the last."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def bar_chart(
    points: Sequence[Point],
    *,
    title: str,
    unit: str = "",
    time_format: str = "%H:%M",
    frame: Frame | None = None,
) -> str:
    """An SVG bar chart of ``points`` ((label, value) pairs, values finite and >= 0): one
    ``<rect class="bar">`` per point, in order, zero values included (with no height).

    ``title`` names the chart (its accessible name); ``unit`` follows the values in the hover
    text ("3 sends"); ``time_format`` formats datetime labels. Every text is escaped."""
    f = frame or Frame()
    labels = [label_text(label, time_format) for label, _ in points]
    values = [float(value) for _, value in points]
    for value in values:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"bar_chart plots finite values >= 0, not {value!r}")
    top = nice_ceiling(max(values, default=0.0))
    suffix = f" {unit}" if unit else ""
    base_y = f.top + f.plot_height
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {f.width} {f.height}" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="{xml_text(title)}">',
        f"<title>{xml_text(title)}</title>",
        f"<desc>{xml_text(describe(labels, values, unit))}</desc>",
    ]
    # Axes and the y ticks: 0, half and the (round) top.
    out.append(
        f'<g class="axes" stroke="#888" stroke-width="1" fill="none">'
        f'<line x1="{f.left}" y1="{f.top}" x2="{f.left}" y2="{base_y}"/>'
        f'<line x1="{f.left}" y1="{base_y}" x2="{f.left + f.plot_width}" y2="{base_y}"/></g>'
    )
    out.append('<g class="y-ticks" font-size="11" fill="#555" text-anchor="end">')
    # Counts get no "0.5" or "2.5" tick: the middle one only when it is a value the data can be.
    counts = all(v.is_integer() for v in values)
    fractions = (0.0, 0.5, 1.0) if not counts or (top / 2).is_integer() else (0.0, 1.0)
    for fraction in fractions:
        y = base_y - fraction * f.plot_height
        out.append(
            f'<text x="{f.left - 6}" y="{y + 4:.1f}">{xml_text(number_text(top * fraction))}</text>'
        )
    out.append("</g>")
    count = len(values)
    slot = f.plot_width / count if count else 0.0
    gap = min(2.0, slot * 0.2)
    out.append('<g class="bars" fill="#1d4ed8">')
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = value / top * f.plot_height
        x = f.left + index * slot + gap / 2
        out.append(
            f'<rect class="bar" x="{x:.2f}" y="{base_y - height:.2f}" '
            f'width="{max(slot - gap, 0.5):.2f}" height="{height:.2f}" '
            f'data-label="{xml_text(label)}" data-value="{xml_text(number_text(value))}">'
            f"<title>{xml_text(label)}: {xml_text(number_text(value))}{xml_text(suffix)}</title>"
            f"</rect>"
        )
    out.append("</g>")
    out.append('<g class="x-ticks" font-size="11" fill="#555" text-anchor="middle">')
    for index in _tick_indexes(count):
        x = f.left + (index + 0.5) * slot
        text = labels[index]
        short = text if len(text) <= _TICK_CHARS else text[: _TICK_CHARS - 1] + "\u2026"
        out.append(f'<text x="{x:.2f}" y="{base_y + 16}">{xml_text(short)}</text>')
    out.append("</g>")
    if not count:
        out.append(
            f'<text x="{f.left + f.plot_width / 2:.1f}" y="{f.top + f.plot_height / 2:.1f}" '
            f'font-size="12" fill="#555" text-anchor="middle">No data</text>'
        )
    out.append("</svg>")
    return "".join(out)


def describe(labels: Sequence[str], values: Sequence[float], unit: str = "") -> str:
    """The chart in one sentence, for screen readers and anyone without the picture."""
    if not values:
        return "No data."
    suffix = f" {unit}" if unit else ""
    total = sum(values)
    peak = max(range(len(values)), key=lambda i: values[i])
    return (
        f"{len(values)} bars from {labels[0]} to {labels[-1]}; "
        f"total {number_text(total)}{suffix}; highest {number_text(values[peak])}{suffix} "
        f"at {labels[peak]}."
    )
