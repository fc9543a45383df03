"""The README cannot rot: every Python block in it is either a program this file runs or an excerpt of an example.

* A fenced ``python`` block right after ``<!-- snippet: PATH -->`` must be a contiguous run of lines of
  ``PATH`` (a file in ``scripts/examples/``), in order, blank lines included; the block may drop the run's
  common indentation (an excerpt from inside ``main()`` is shown dedented). The example files themselves run
  in ``tests/scripts/``.
* Every other ``python`` block must be a whole program, listed in :data:`PROGRAMS` by its first line. The
  test runs it as written, in a fresh working directory, after the listed substitutions, which only shrink
  sizes (episodes, steps) so that it takes seconds; each substitution must match exactly once, so a README
  edit that removes one fails here rather than silently running the full size.

Before this, blocks were checked line by line for membership in their file, which let two snippets become
collages that could not run (``main()`` lines after a ``return``, undefined names).
"""

from __future__ import annotations

import re
import runpy
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- snippet: (?P<path>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)
BLOCKS = [(m.group("path"), m.group("code")) for m in BLOCK.finditer(README)]
SNIPPETS = [(path, code) for path, code in BLOCKS if path]
OTHERS = [code for path, code in BLOCKS if not path]


def _tiny_reward_model(cwd: Path) -> None:
    """What ``make demo`` leaves in ``runs/demo/reward/model``, stood in for by a tiny untrained model."""
    from hfrl.rewards import RewardModelConfig, make_reward_model, save_reward_model

    save_reward_model(cwd / "runs/demo/reward/model", make_reward_model(RewardModelConfig(width=2, hidden=4)))


PROGRAMS: dict[str, tuple[list[tuple[str, str]], Callable[[Path], None] | None]] = {
    # first line of the block -> (substitutions that shrink it, set-up in the working directory)
    "import torch": ([], None),  # the feedback queue, answered by the synthetic labeler
    "import gymnasium as gym": (  # Stable-Baselines3 PPO on the wrapped environment
        [
            ("num_envs=64", "num_envs=4"),
            ("n_steps=16", "n_steps=2, batch_size=8"),
            (".learn(2_048)", ".learn(8)"),
        ],
        None,
    ),
    "import numpy as np": (  # bring your own data: a tensor with labels through an agent
        [
            ("labels = digits.labels.numpy()  # (5000,)", "labels = digits.labels.numpy()[::10]"),
            ("digits.images[:, 0]", "digits.images[::10, 0]"),
            (
                "steps=100",
                "steps=1, batch_size=8, aux_batch_size=4, eval_size=8, device='cpu', progress=False",
            ),
        ],
        None,
    ),
    "from hfrl.agents import make_config, make_trainer": (
        [("steps=100", "steps=1, batch_size=8, aux_batch_size=4, eval_size=8, device='cpu', progress=False")],
        _tiny_reward_model,
    ),
}


def test_the_readme_has_snippets_from_every_example() -> None:
    sources = {path for path, _ in SNIPPETS}
    examples = {str(p.relative_to(ROOT)) for p in (ROOT / "scripts" / "examples").glob("*.py")}
    assert examples <= sources, f"examples the README does not show: {sorted(examples - sources)}"
    assert sources <= examples, f"snippets from files that are not examples: {sorted(sources - examples)}"


def excerpt_start(code: str, source: str) -> int | None:
    """The line index where ``code`` (possibly dedented) is a contiguous run of ``source``'s lines, or None."""
    want = code.rstrip("\n").splitlines()
    lines = source.splitlines()
    for start in range(len(lines) - len(want) + 1):
        run = "\n".join(lines[start : start + len(want)])
        if textwrap.dedent(run) == "\n".join(want):
            return start
    return None


def test_excerpt_check_rejects_collages() -> None:
    source = "def f():\n    a = 1\n    return a\n\n\ndef main():\n    b = 2\n"
    assert excerpt_start("a = 1\nreturn a\n", source) == 1
    assert excerpt_start("def f():\n    a = 1\n", source) == 0
    assert excerpt_start("return a\na = 1\n", source) is None  # out of order
    assert excerpt_start("def f():\n    a = 1\n    b = 2\n", source) is None  # lines from two places


@pytest.mark.parametrize(("path", "code"), SNIPPETS, ids=lambda v: str(v).splitlines()[0][:40])
def test_snippets_are_contiguous_excerpts_of_their_file(path: str, code: str) -> None:
    assert path.startswith("scripts/examples/"), path
    assert excerpt_start(code, (ROOT / path).read_text()) is not None, (
        f"this README block is not a contiguous excerpt of {path}:\n{code}"
    )


def test_every_other_python_block_is_a_program_that_runs_here() -> None:
    firsts = [code.splitlines()[0] for code in OTHERS]
    assert sorted(firsts) == sorted(PROGRAMS), (
        "each README python block without a snippet marker must be listed in PROGRAMS by its first line"
    )


@pytest.mark.parametrize("code", OTHERS, ids=lambda v: v.splitlines()[0][:40])
def test_program_blocks_run(code: str, tmp_path: Path, monkeypatch, capsys) -> None:
    substitutions, setup = PROGRAMS[code.splitlines()[0]]
    for old, new in substitutions:
        assert code.count(old) == 1, f"{old!r} should occur once in the block"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    program = tmp_path / "readme_block.py"
    program.write_text(code)
    runpy.run_path(str(program), run_name="__main__")
