"""Optional dependencies (pyproject extras): import one, or fail with one line naming the extra."""
from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the pip command."""


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(f"{needed_for} needs {module.split('.')[0]}: pip install 'tslrec[{extra}]'") from e
