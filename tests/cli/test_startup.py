"""``hfrl --help``, ``--version`` and every ``hfrl X --help`` import none of the heavy libraries.

Each check runs in a fresh interpreter, since this one has imported them long ago. Deterministic: what is
in ``sys.modules`` afterwards, not how long it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = (
    "torch",
    "torchvision",
    "stable_baselines3",
    "gymnasium",
    "pandas",
    "pyarrow",
    "matplotlib",
    "fastapi",
    "uvicorn",
    "skimage",
    "mlxtend",
    "tensorboard",
)
"""Libraries only the command that runs may import."""


def _heavy_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return its JSON line: the heavy modules loaded, and more."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        result["heavy"] = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print(json.dumps(result))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_heavy_library() -> None:
    result = _heavy_after(
        """
        from hfrl.cli import build_parser
        build_parser()
        result = {}
        """
    )
    assert result["heavy"] == []


def test_version_help_and_every_subcommand_help_import_no_heavy_library() -> None:
    result = _heavy_after(
        """
        import contextlib, io
        from hfrl.cli import build_parser, main

        sub = next(a for a in build_parser()._actions if a.dest == "command")
        commands = [["--version"], ["--help"]]
        for name, p in sub.choices.items():
            commands.append([name, "--help"])
            for action in p._actions:  # nested actions: hfrl label serve, hfrl reward train, ...
                if isinstance(getattr(action, "choices", None), dict):
                    commands.extend([name, n, "--help"] for n in action.choices)
        result = {"codes": {}}
        for argv in commands:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    main(argv)
            except SystemExit as exc:
                result["codes"][" ".join(argv)] = exc.code
        """
    )
    codes = result["codes"]
    assert {"--version", "--help", "finetune --help", "demo --help", "label serve --help"} <= set(codes)
    assert {"reward train --help", "pretrain --help", "censor --help"} <= set(codes)
    assert set(codes.values()) == {0}
    assert result["heavy"] == []


def test_python_m_hfrl_cli_is_the_console_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hfrl.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("hfrl ")
