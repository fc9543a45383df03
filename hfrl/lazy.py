"""Public names of a package imported on first use (PEP 562), so that a light module stays light.

``hfrl --help`` must not import torch, yet ``from hfrl.agents import PPOTrainer`` must keep working. A
package lists its public names and the module each comes from, and :func:`lazy_exports` gives it the
module-level ``__getattr__`` and ``__dir__`` that import a name (or a submodule) the first time it is
asked for and keep it in the package's namespace afterwards::

    _EXPORTS = {"PPOTrainer": "hfrl.agents.ppo"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module_name: str, exports: Mapping[str, str], before: Callable[[], object] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a module whose public names are imported on first use.

    Args:
        module_name: The module's ``__name__``.
        exports: ``{name: module it lives in}``.
        before: Called before a name is imported the first time (e.g. registering built-in agents).

    Returns:
        ``(__getattr__, __dir__)``, to assign at the module's top level. ``__getattr__`` also imports a
        submodule of a package by its name (``hfrl.agents.ppo`` as ``hfrl.agents.ppo``), and raises
        ``AttributeError`` for anything else.
    """

    def __getattr__(name: str) -> Any:
        module = sys.modules[module_name]
        if name in exports:
            if before is not None:
                before()
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(module, name, value)
            return value
        path = getattr(module, "__path__", None)
        if path is not None and name in {m.name for m in pkgutil.iter_modules(path)}:
            return importlib.import_module(f"{module_name}.{name}")
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module_name]), *exports})

    return __getattr__, __dir__
