"""User code that extends hfrl: a module or a Python file imported by name, e.g. one that registers an agent.

``hfrl finetune``, ``hfrl bench`` and ``hfrl sweep`` take ``--import MODULE|FILE.py``; sweeps import the
same code again in each worker process, so an agent registered there runs in the workers too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hfrl.errors import ConfigError

USER_PREFIX = "hfrl_user_"
"""Module names of imported files start with this (then the file's stem and a hash of its path)."""


def user_module_name(path: str | Path) -> str:
    """The module name a Python file is imported under: the same in every process for the same file."""
    path = Path(path)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{USER_PREFIX}{path.stem}_{digest}"


def import_user_code(spec: str) -> ModuleType:
    """Import a module by name, or a Python file by path, once per process; return the module.

    Raises:
        ConfigError: when it cannot be found or fails while importing (one line, naming ``--import``).
    """
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise ConfigError(f"--import {spec}: no such file")
            name = user_module_name(path)
            if name in sys.modules:
                return sys.modules[name]
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise ConfigError(f"--import {spec}: not a Python file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # dataclasses and pickle look their module up there
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(spec)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--import {spec}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code failed: one line, as for every bad input
        raise ConfigError(f"--import {spec}: {type(exc).__name__}: {exc}") from None
