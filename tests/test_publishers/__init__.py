"""Tests of the ``publishers`` package (a package, so its helpers import as ``test_publishers._support``)."""
