"""One self-contained HTML report: images inlined as base64, no scripts, no network."""

from __future__ import annotations

import base64
import html
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "Section",
    "figure_html",
    "json_records",
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
figure{margin:10px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
.kv td{text-align:left} .note{color:#555;font-size:.9rem}
.flag-ok{color:#1a7f37} .flag-bad{color:#b42318;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{flex:1 1 180px;border:1px solid #e1e4e8;
border-radius:6px;padding:10px 14px} .card b{display:block;font-size:1.35rem;color:#17324d}
pre{background:#f0f3f6;padding:10px;border-radius:6px;overflow-x:auto;font-size:.82rem}
"""


@dataclass
class Section:
    """A titled block of the report; ``body`` is trusted HTML built with the helpers below."""

    title: str
    body: list[str] = field(default_factory=list)
    anchor: str = ""


def figure_html(png: str | Path | bytes, caption: str = "", *, alt: str = "") -> str:
    """An ``<img>`` with the PNG inlined as a data URI, and a caption."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    b64 = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><img alt="{html.escape(alt or caption)}" '
            f'src="data:image/png;base64,{b64}">{cap}</figure>')


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
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = " · ".join(
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
        f"<main><p class=\"note\">{toc}</p>{body}</main></body></html>\n"
    )


def _slug(text: str) -> str:
    """``text`` as an HTML anchor."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
