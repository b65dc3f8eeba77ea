"""Tables of the report as small standalone HTML pages (Snakemake's report embeds them)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}"
    "td:first-child,th:first-child{text-align:left}caption{text-align:left;margin:0.4em 0;font-weight:bold}"
    "tr.sig td{background:#fdecea}"
)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "n/a"
        return f"{v:.4g}"
    return str(v)


def table_html(df: pd.DataFrame, title: str, note: str = "", highlight: str | None = None) -> str:
    """A titled HTML table; rows where column ``highlight`` is true are shaded."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cls = ' class="sig"' if highlight and str(r.get(highlight)) == "True" else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>")
    body = "\n".join(rows) if rows else f'<tr><td colspan="{len(df.columns)}">no rows</td></tr>'
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><table><caption>{html.escape(title)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
        f"<p>{html.escape(note)}</p></body></html>\n"
    )
