"""`gis report RUN_DIR`: one self-contained HTML page for the seller, from a `gis shift` folder.

=============  ==============================================================================
module         job
=============  ==============================================================================
``run``        read and check the folder: the record (gis.record.ShiftRecord) and its images
``summary``    the numbers and sentences the page shows (recommendation, ranks, distances)
``charts``     the charts, drawn by matplotlib and placed inline as SVG
``page``       the page from the Jinja2 template ``templates/report.html.j2`` (autoescaped)
               and its style sheet ``templates/report.css``; writing it atomically
``cli``        the ``gis report`` command
=============  ==============================================================================

Imported when the CLI starts: the top-level imports stay light (matplotlib, Jinja2 and PIL
load only when a page is rendered). docs/OUTPUTS.md describes the page.
"""

from __future__ import annotations

from .cli import report
from .page import render_report, write_report
from .run import Run, load_run
from .summary import format_change, format_score, smallest_gaining_change

__all__ = ["Run", "format_change", "format_score", "load_run", "render_report", "report",
           "smallest_gaining_change", "write_report"]
