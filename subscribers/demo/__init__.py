"""``bus demo``: a burst of realistic events through the publishers, every subscriber in-process, a report.

``main(argv)`` is what ``bus demo`` runs (``python -m subscribers.demo`` too); see the README's
"The demo". The scenario is in ``_scenario.py``, the directory of people in ``directory.yaml``,
the demo's workflow triggers in ``_triggers.py``, the checks and printing in ``_report.py``.
"""

from __future__ import annotations

from ._main import DIRECTORY_FILE, DemoOptions, build_parser, main, run_demo
from ._report import DemoReport, Step, render_text

__all__ = ["DIRECTORY_FILE", "DemoOptions", "DemoReport", "Step", "build_parser", "main", "render_text", "run_demo"]
