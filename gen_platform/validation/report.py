"""A human-readable HTML report of a validation run (the stage output `reports/validation.html`)."""

from __future__ import annotations

import html
from pathlib import Path

from gen_platform.validation.suite import ValidationReport


def write_html(report: ValidationReport, path: Path, title: str) -> Path:
    rows = "\n".join(
        f"<tr class={'pass' if o.success else 'fail'}><td>{'PASS' if o.success else 'FAIL'}</td>"
        f"<td>{html.escape(o.table)}</td><td>{html.escape(o.expectation)}</td>"
        f"<td><code>{html.escape(str(o.kwargs))}</code></td><td>{html.escape(o.observed)}</td></tr>"
        for o in report.outcomes)
    verdict = "passed" if report.success else f"FAILED ({len(report.failures)} of {len(report.outcomes)})"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #ccc;padding:4px}} table{{border-collapse:collapse}}
.pass td:first-child{{color:#070}} .fail td:first-child{{color:#b00;font-weight:bold}}</style></head>
<body><h1>{html.escape(title)}</h1><p>Great Expectations suite {verdict} on {report.rows} images.</p>
<p>Drift: {html.escape(report.drift)}.</p>
<table><tr><th>result</th><th>table</th><th>expectation</th><th>arguments</th><th>observed</th></tr>
{rows}</table></body></html>
""")
    return path
