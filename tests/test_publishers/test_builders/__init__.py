"""Tests of publishers.builders (a package, so test module names may repeat elsewhere)."""
