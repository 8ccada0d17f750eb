"""Tests of the ``bus`` package (a package, so its helpers import as ``test_bus._support``)."""
