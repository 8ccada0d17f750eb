"""A griffe extension for the API pages: Sphinx roles in docstrings (``:func:`x```) become code spans.

The packages' docstrings use reST roles (``:class:``, ``:meth:``, ``:func:``, ...); mkdocstrings
renders Markdown, where a role would show as literal text. ``~`` (show the last name only) is honoured.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|attr|data|mod|exc|obj|const):(`{1,2})(~?)([^`]+)\1")


def _code(match: re.Match[str]) -> str:
    short, target = match[2], match[3]
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring once it is loaded."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """The top package is not an ``on_object`` visit: rewrite its docstring here."""
        if pkg.docstring is not None:
            pkg.docstring.value = ROLE.sub(_code, pkg.docstring.value)
