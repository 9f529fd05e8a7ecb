"""Charts drawn here as inline SVG, for the report pages: no script, no image request, and
readable by a screen reader (``role="img"``, a ``<title>`` and a ``<desc>`` naming the data
table that carries the same figures). Presentation attributes only: the pages' CSP allows no
inline style. In a right-to-left page the bars grow from the right, as the text reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

ROW = 22
LABEL_WIDTH = 190
BAR_WIDTH = 300
VALUE_WIDTH = 70


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # within [0, scale]
    shown: str  # the value as the page writes it (its locale)


def bar_chart(bars: list[Bar], *, scale: float, title: str, desc: str, chart_id: str,
              rtl: bool = False) -> Markup:
    """Horizontal bars, one per row, with their labels and values written beside them."""
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    height = ROW * max(len(bars), 1) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
             f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
             f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
             # anchors as drawn: the page's right-to-left must not turn "end" into left
             f'direction="ltr">',
             f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
             f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>']
    for n, bar in enumerate(bars):
        y = 4 + n * ROW
        length = 0.0 if scale <= 0 else max(0.0, min(1.0, bar.value / scale)) * BAR_WIDTH
        if rtl:
            label_x, anchor = width, "end"
            bar_x = width - LABEL_WIDTH - length
            value_x, value_anchor = bar_x - 6, "end"
        else:
            label_x, anchor = 0, "start"
            bar_x = LABEL_WIDTH
            value_x, value_anchor = LABEL_WIDTH + length + 6, "start"
        parts.append(
            f'<g><text x="{label_x}" y="{y + 14}" text-anchor="{anchor}" font-size="12" '
            f'fill="#1f2a2e">{escape(bar.label[:32])}</text>'
            f'<rect x="{bar_x:.1f}" y="{y + 3}" width="{length:.1f}" height="{ROW - 8}" '
            f'rx="2" fill="#0f6b50"/>'
            f'<text x="{value_x:.1f}" y="{y + 14}" text-anchor="{value_anchor}" '
            f'font-size="12" fill="#1f2a2e">{escape(bar.shown)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text above is escaped)
