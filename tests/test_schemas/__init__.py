"""Tests of the ``schemas`` package (a package, so its helpers import as ``test_schemas._examples``)."""
