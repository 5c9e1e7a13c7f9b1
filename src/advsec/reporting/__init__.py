"""Reporting: figures, the self-contained HTML report, exports."""

from __future__ import annotations

from advsec.reporting.html import Section, figure_html, kv_html, render_report, table_html
from advsec.reporting.plots import plot_confusions, plot_projection, plot_robustness, save_figure

__all__ = [
    "Section",
    "figure_html",
    "kv_html",
    "plot_confusions",
    "plot_projection",
    "plot_robustness",
    "render_report",
    "save_figure",
    "table_html",
]
