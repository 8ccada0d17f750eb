"""``python -m subscribers.demo`` (same as ``bus demo``)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
