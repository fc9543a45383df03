"""User code that extends hfrl: a module or a Python file imported by name, e.g. one that registers an agent.

``hfrl finetune``, ``hfrl bench`` and ``hfrl sweep`` take ``--import MODULE|FILE.py``; sweeps import the
same code again in each worker process, so an agent registered there runs in the workers too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from hfrl.errors import ConfigError

USER_PREFIX = "hfrl_user_"
"""Module names of imported files start with this (then the file's stem and a hash of its path)."""


class UserCodeError(ConfigError):
    """User code loaded by ``--import`` raised while importing.

    The message is one line; :attr:`user_traceback` holds the traceback of the user's own frames (hfrl's
    and importlib's left out), which the CLI prints above that line.
    """

    def __init__(self, message: str, user_traceback: str = "") -> None:
        super().__init__(message)
        self.user_traceback = user_traceback

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.user_traceback))


def _user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback without the frames of importlib and this module."""
    here = Path(__file__).resolve()
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<frozen importlib") and Path(f.filename).resolve() != here
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def user_module_name(path: str | Path) -> str:
    """The module name a Python file is imported under: the same in every process for the same file."""
    path = Path(path)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{USER_PREFIX}{path.stem}_{digest}"


def import_user_code(spec: str) -> ModuleType:
    """Import a module by name, or a Python file by path, once per process; return the module.

    Raises:
        ConfigError: when it cannot be found (one line, naming ``--import``).
        UserCodeError: when the user's code raises while importing (one line, plus the user's traceback
            in ``user_traceback``).
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
        if exc.name is not None and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise ConfigError(f"--import {spec}: {exc}") from None  # the name given does not exist
        raise UserCodeError(
            f"--import {spec} failed: {type(exc).__name__}: {exc}", _user_traceback(exc)
        ) from exc
    except Exception as exc:  # noqa: BLE001 - the user's code failed: their traceback, then one line
        raise UserCodeError(
            f"--import {spec} failed: {type(exc).__name__}: {exc}", _user_traceback(exc)
        ) from exc
