"""One self-contained HTML report: images inlined as base64, one short inline script (sortable
tables), nothing loaded from the network; styles for screens, phones and print."""

from __future__ import annotations

import base64
import html
import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Section",
    "figure_html",
    "json_records",
    "json_text",
    "kv_html",
    "render_report",
    "table_html",
    "versions",
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d232b;
background:#f6f7f9;line-height:1.45}
main{max-width:1150px;margin:0 auto;padding:24px 28px 60px}
header{background:#17324d;color:#fff;padding:22px 28px}
header h1{margin:0 0 4px;font-size:1.6rem} header p{margin:0;opacity:.85}
section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:18px 22px;margin:18px 0}
h2{font-size:1.2rem;margin:0 0 10px;color:#17324d} h3{font-size:1rem;margin:14px 0 6px}
table{border-collapse:collapse;font-size:.86rem;margin:8px 0;max-width:100%;display:block;
overflow-x:auto}
th,td{border-bottom:1px solid #e6e8eb;padding:4px 9px;text-align:right;white-space:nowrap}
th{background:#f0f3f6;text-align:center} td:first-child,th:first-child{text-align:left}
figure{margin:10px 0} figure img{max-width:100%;height:auto;border:1px solid #eee;
box-sizing:border-box}
figcaption{font-size:.85rem;color:#555}
.kv td{text-align:left;white-space:normal} .note{color:#555;font-size:.9rem}
.flag-ok{color:#1a7f37} .flag-bad{color:#b42318;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{flex:1 1 180px;border:1px solid #e1e4e8;
border-radius:6px;padding:10px 14px} .card b{display:block;font-size:1.35rem;color:#17324d}
pre{background:#f0f3f6;padding:10px;border-radius:6px;overflow-x:auto;font-size:.82rem}
.table-wrap{max-width:100%;overflow-x:auto;margin:8px 0}
.table-wrap table{display:table;margin:0}
table.sortable th{cursor:pointer;white-space:normal;vertical-align:bottom;text-align:left}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
table.sortable td{text-align:left} table.sortable td.num{text-align:right;
font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-size:.85rem;color:#555;padding:2px 0 6px}
details{margin:8px 0} summary{cursor:pointer;color:#17324d;font-weight:600}
nav.toc{font-size:.9rem;margin:12px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
nav.toc a{white-space:nowrap}
.headline{font-size:1.08rem;border-left:4px solid #17324d;padding:6px 12px;background:#f0f3f6}
.headline .aside{display:block;font-size:.9rem;color:#555;margin-top:4px}
.card .sub{display:block;font-size:.82rem;color:#555}
.flag-na{color:#6b7280}
#red-flag-checks td{white-space:normal}
figure .scroll{overflow-x:auto}
@media (max-width:640px){main{padding:10px 8px 40px} header{padding:14px 12px}
section{padding:12px 10px;margin:12px 0} .card{flex:1 1 100%}
figure img{min-width:600px} figure img.wide{min-width:880px} th,td{padding:3px 6px}
caption{position:sticky;left:0;max-width:calc(100vw - 44px)}}
@media print{body{background:#fff} header{background:#fff;color:#000;padding:0}
main{max-width:none;padding:0} section{border:none;padding:0;margin:12px 0;break-inside:auto}
h2,h3,caption,summary{break-after:avoid;page-break-after:avoid}
table,figure,.card,.headline{break-inside:avoid;page-break-inside:avoid}
.table-wrap{overflow:visible} table{font-size:7pt} th,td{white-space:normal;padding:2px 4px}
figure img{max-width:100%;min-width:0} figure .scroll{overflow:visible}
nav.toc{display:none}}
"""


@dataclass
class Section:
    """A titled block of the report; ``body`` is trusted HTML built with the helpers below."""

    title: str
    body: list[str] = field(default_factory=list)
    anchor: str = ""


def figure_html(png: str | Path | bytes, caption: str = "", *, alt: str = "",
                scale: int = 2) -> str:
    """An ``<img>`` with the PNG inlined as a data URI, and a caption.

    ``scale``: pixels per CSS pixel of the PNG (figures are saved at 2× resolution by
    :func:`advsec.reporting.plots.save_figure`, sharp on high-resolution screens)."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    b64 = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    width = ""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:
        css_px = int.from_bytes(data[16:20], "big") // max(scale, 1)
        # wide figures (several panels) get more room on phones: they scroll sideways
        width = f' width="{css_px}"' + (' class="wide"' if css_px > 1000 else "")
    return (f'<figure><div class="scroll"><img alt="{html.escape(alt or caption)}"{width} '
            f'src="data:image/png;base64,{b64}"></div>{cap}</figure>')


def table_html(df: pd.DataFrame, *, digits: int = 4, index: bool = False) -> str:
    """A DataFrame as an HTML table, floats rounded to ``digits``."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) >= 1e4 else (
                f"{v:.{digits}f}".rstrip("0").rstrip(".") if v != 0 else "0")
        return str(v)

    return df.to_html(index=index, border=0, formatters={c: fmt for c in df.columns},
                      escape=True)


def kv_html(items: Mapping[str, Any]) -> str:
    """A two-column key/value table."""
    rows = "".join(f"<tr><td><b>{html.escape(str(k))}</b></td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in items.items())
    return f'<table class="kv">{rows}</table>'


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (what ``metrics.json`` holds): NaN and ±infinity written as
    ``null``, NumPy scalars and arrays as numbers and lists; never the invalid ``NaN``."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (recursively), NumPy values as
    Python ones."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as dictionaries for JSON, NaN written as ``null``."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers."""
    import numpy
    import sklearn
    import torch

    import advsec

    return {
        "advsec": advsec.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def render_report(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str = "",
    css: str = "",
) -> str:
    """The whole report as one HTML string (no external resources); ``css`` is appended to
    the report's style sheet."""
    from advsec.reporting.tables import SORT_SCRIPT

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = "".join(
        f'<a href="#{s.anchor or _slug(s.title)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.anchor or _slug(s.title)}"><h2>{html.escape(s.title)}</h2>'
        + "\n".join(s.body) + "</section>"
        for s in sections
    )
    sub = html.escape(subtitle) + (" · " if subtitle else "") + f"generated {stamp}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}{css}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{sub}</p></header>"
        f"<main><nav class=\"toc\" aria-label=\"Contents\">{toc}</nav>{body}</main>"
        f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )


def _slug(text: str) -> str:
    """``text`` as an HTML anchor."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
