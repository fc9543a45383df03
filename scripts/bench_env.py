"""Benchmark ``hfrl/Denoise-v0``: samples per second of the single env, SyncVectorEnv and the batched env.

    python scripts/bench_env.py [--repeats 5] [--out bench-results/env.md] [--device auto] [--threads 1] [--quick]

A *sample* is one finished episode: one output image scored. Every configuration scores with the same
reward model, by default :class:`PairCNNReward`, an untrained CNN over the stacked ``(noisy, output)``
pair with two 3x3 conv layers (32 and 64 channels), max-pooling and a linear head, about 4 M
multiply-adds per pair: the size of a reward model learned from a few hundred labels.
``--reward model`` (``hfrl.rewards``' default architecture, untrained), ``--reward labeler`` (the oracle)
or ``--reward PATH`` (a trained reward-model checkpoint) swaps it.

Rows, all measured in the same run; every configuration runs once per repeat (interleaved, so load drift on a
shared machine hits all alike), and each figure is the median over ``--repeats`` of the median single-call
time within a repeat:

* raw reward forward — ``reward(noisy, output)`` on a batch of ``N`` without gradients: the floor;
* batched env — ``BatchedDenoiseEnv.step_torch`` (agents) and ``step`` (NumPy, Gymnasium users), each
  including the next episodes' draws, with the evaluator's info off and on;
* single env — ``gymnasium.make`` then ``reset`` + ``step`` per sample in a Python loop;
* SyncVectorEnv — Gymnasium's ``SyncVectorEnv`` of ``N`` single envs (``SAME_STEP`` autoreset).

The goals of the env issue are checked at the end: batched step <= 1.15x the raw forward at N = 256,
and >= 50x the single-env loop.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

import hfrl.envs  # noqa: F401  (registers hfrl/Denoise-v0)
from hfrl.device import cpu_name, resolve_device
from hfrl.envs.denoise import resolve_images
from hfrl.envs.rewards import resolve_reward
from hfrl.envs.vector import BatchedDenoiseEnv

ENV_ID = "hfrl/Denoise-v0"
GOAL_RATIO = 1.15
GOAL_SPEEDUP = 50.0
GOAL_N = 256
BARE = "no reward model: "
"""Prefix of the rows that time the environment's own work (``reward=None``): draws, noise, checks, infos."""


@dataclass
class Args:
    """Command-line arguments (``--repeats``, ``--out``, ...)."""

    repeats: int = 5
    """Timed repeats per configuration; the table reports medians."""
    out: str = "bench-results/env.md"
    """Markdown file the table is written to."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N: where the batched env and the reward model run."""
    quick: bool = False
    """Tiny batches and short repeats: a smoke test, the numbers mean nothing."""
    reward: str = "cnn"
    """cnn (PairCNNReward), model (hfrl.rewards' default architecture, untrained), labeler (the oracle) or a
    reward-model checkpoint path."""
    min_time: float = 0.4
    """Seconds each timed repeat lasts at least."""
    sync_envs: int = 16
    """N of the SyncVectorEnv row."""
    seed: int = 0
    """Seed of the environments, the actions and the CNN's weights."""
    threads: int = 1
    """torch CPU threads; 0 keeps torch's default (all cores). One thread times steadily on a shared machine:
    with two, every small op waits at an OpenMP barrier whenever another process holds a core."""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=f"{f.name} (flag)")
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=f.default, help=f"default {f.default}")
    args = Args(**vars(parser.parse_args(argv)))
    if args.quick:
        args.repeats, args.min_time, args.sync_envs = 1, 0.002, 2
    return args


class PairCNNReward(nn.Module):
    """A small CNN reward over the stacked ``(noisy, output)`` pair, standing in for a learned one.

    Args:
        image_size: ``(H, W)``, both divisible by 4.
        seed: Seed of the (untrained) weights.
    """

    def __init__(self, image_size: tuple[int, int] = (28, 28), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        h, w = image_size
        self.net = nn.Sequential(
            nn.Conv2d(2, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, H/4, W/4)
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 1),
        )

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``(B,)`` scores for ``(B, 1, H, W)`` pairs."""
        return self.net(torch.cat([noisy, output], dim=1)).squeeze(1)

    def multiply_adds(self, image_size: tuple[int, int] = (28, 28)) -> int:
        """Multiply-adds per pair."""
        h, w = image_size
        return h * w * 32 * 2 * 9 + (h // 2) * (w // 2) * 64 * 32 * 9 + 64 * (h // 4) * (w // 4)


def build_reward(name: str, device: torch.device) -> tuple[Any, str]:
    """The reward and a one-line description of it."""
    if name == "cnn":
        model = PairCNNReward().to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        return (
            model,
            f"PairCNNReward (untrained; {params:,} parameters, {model.multiply_adds() / 1e6:.1f} M multiply-adds per pair)",
        )
    if name == "model":
        from hfrl.rewards import build_reward_model

        model = build_reward_model({}).to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        return model, f"hfrl.rewards default {type(model).__name__} (untrained; {params:,} parameters)"
    reward = resolve_reward(name, device)
    return reward, f"{name} ({type(reward).__name__})"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = cpu_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {"cpu": cpu, "nproc": str(cores), "threads": str(torch.get_num_threads()), "load": load}


@dataclass
class Case:
    """One configuration to time: ``fn`` finishes ``n`` episodes (or runs the raw forward on ``n``)."""

    setup: str
    n: int
    evaluate: str
    fn: Callable[[], Any]
    device: torch.device
    calls: int = 1
    seconds: list[float] = field(default_factory=list)  # per step, one per repeat

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def call(self) -> float:
        """Seconds of one call."""
        start = time.perf_counter()
        self.fn()
        self._sync()
        return time.perf_counter() - start

    def calibrate(self, min_time: float) -> None:
        """Warm up, then pick the number of calls per repeat that lasts ``min_time``."""
        self.call()
        self.calls = max(1, math.ceil(min_time / max(self.call(), 1e-6)))

    def repeat(self) -> None:
        """One repeat: the median of ``calls`` single calls (robust to bursts on a shared machine)."""
        self.seconds.append(statistics.median(self.call() for _ in range(self.calls)))

    @property
    def step_ms(self) -> float:
        """Median milliseconds per step."""
        return 1e3 * statistics.median(self.seconds)

    @property
    def samples_per_s(self) -> float:
        """Median finished episodes per second."""
        return self.n / statistics.median(self.seconds)


def batched_cases(args: Args, n: int, reward: Any, data: Any, device: torch.device) -> list[Case]:
    """The raw forward (the floor) and the batched env's two faces, evaluate off and on, at one N."""
    gen = torch.Generator().manual_seed(args.seed)
    noisy = torch.rand(n, 1, 28, 28, generator=gen).to(device)
    actions_t = torch.rand(n, 1, 28, 28, generator=gen).to(device)
    actions_np = actions_t.cpu().numpy()

    def forward() -> None:
        with torch.no_grad():
            reward(noisy, actions_t)

    cases = [Case("raw reward forward (floor)", n, "-", forward, device)]
    for evaluate in (False, True):
        env = BatchedDenoiseEnv(n, reward=reward, dataset=data, evaluate=evaluate, device=device)
        env.reset(seed=args.seed)
        label = "on" if evaluate else "off"
        cases.append(Case("batched env, torch face", n, label, lambda e=env: e.step_torch(actions_t), device))
        cases.append(Case("batched env, NumPy face", n, label, lambda e=env: e.step(actions_np), device))
    bare = BatchedDenoiseEnv(n, reward=None, dataset=data, evaluate=False, device=device)
    bare.reset(seed=args.seed)
    cases.append(Case(f"{BARE}batched env, torch face", n, "off", lambda: bare.step_torch(actions_t), device))
    return cases


def single_cases(args: Args, reward: Any, data: Any) -> list[Case]:
    """The single env in a Python loop (reset + step per sample) and Gymnasium's SyncVectorEnv (CPU)."""
    cpu = torch.device("cpu")
    action = np.random.default_rng(args.seed).random((1, 28, 28), dtype=np.float32)
    cases = []
    for setup, rewarded, evaluate in (
        ("single env, Python loop", reward, False),
        ("single env, Python loop", reward, True),
        (f"{BARE}single env, Python loop", None, False),
    ):
        env = gym.make(ENV_ID, reward=rewarded, dataset=data, evaluate=evaluate)
        env.reset(seed=args.seed)

        def episode(env: gym.Env = env) -> None:
            env.reset()
            env.step(action)

        cases.append(Case(setup, 1, "on" if evaluate else "off", episode, cpu))
    n = args.sync_envs
    sync = gym.make_vec(
        ENV_ID,
        num_envs=n,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        reward=reward,
        dataset=data,
        evaluate=False,
    )
    sync.reset(seed=args.seed)
    actions = np.repeat(action[None], n, axis=0)
    cases.append(Case("SyncVectorEnv of single envs", n, "off", lambda: sync.step(actions), cpu))
    return cases


def ratio(cases: list[Case], case: Case) -> float | None:
    """Median over repeats of ``case``'s step time over the raw forward's at the same N."""
    floor = next((c for c in cases if c.setup.startswith("raw") and c.n == case.n), None)
    if floor is None or case.setup.startswith(("single", "Sync", BARE)):
        return None
    return statistics.median(a / b for a, b in zip(case.seconds, floor.seconds))


def find(cases: list[Case], setup: str, n: int, evaluate: str) -> Case:
    """The case with these labels."""
    return next(c for c in cases if c.setup == setup and c.n == n and c.evaluate == evaluate)


def report(
    args: Args, cases: list[Case], reward_text: str, device: torch.device, sizes: tuple[int, ...]
) -> str:
    """The markdown report: context, table, goals."""
    info = machine()
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    quick = " (QUICK: a smoke test, the numbers mean nothing)" if args.quick else ""
    lines = [
        "## `hfrl/Denoise-v0` throughput",
        "",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}, "
        f"gymnasium {gym.__version__}",
        f"- Machine: {info['cpu']}, nproc {info['nproc']}, torch threads {info['threads']}, "
        f"load average at the end {info['load']}",
        f"- Device of the batched env and its reward: {device}{gpu}; the single and Sync envs run on the CPU",
        f"- Reward model: {reward_text}",
        f"- Each figure: median over {args.repeats} repeats of the median single-call time within the repeat "
        f"(>= {args.min_time} s of calls); every configuration runs once per repeat, interleaved{quick}",
        "",
        "| setup | N | evaluate | samples/s | ms / step | x raw forward |",
        "| --- | ---: | :---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        r = ratio(cases, case)
        lines.append(
            f"| {case.setup} | {case.n} | {case.evaluate} | {case.samples_per_s:,.0f} | {case.step_ms:.3g} | "
            f"{'' if r is None else f'{r:.2f}'} |"
        )
    n = GOAL_N if GOAL_N in sizes else max(sizes)
    lines += ["", f"Goals at N = {n}:", ""]
    for evaluate in ("off", "on"):
        loop = find(cases, "single env, Python loop", 1, evaluate)
        for face in ("torch face", "NumPy face"):
            case = find(cases, f"batched env, {face}", n, evaluate)
            r, speedup = ratio(cases, case) or math.nan, case.samples_per_s / loop.samples_per_s
            verdict = (
                f" (goals <= {GOAL_RATIO}: {'met' if r <= GOAL_RATIO else 'MISSED'}; "
                f">= {GOAL_SPEEDUP:.0f}: {'met' if speedup >= GOAL_SPEEDUP else 'MISSED'})"
                if evaluate == "off"
                else ""
            )
            lines.append(
                f"- batched env, {face}, evaluate {evaluate}: {r:.2f}x the raw reward forward, "
                f"{speedup:,.0f}x the single-env loop (evaluate {evaluate}){verdict}"
            )
    bare, bare_loop = (
        find(cases, f"{BARE}batched env, torch face", n, "off"),
        find(cases, f"{BARE}single env, Python loop", 1, "off"),
    )
    floor, loop = (
        find(cases, "raw reward forward (floor)", n, "-"),
        find(cases, "single env, Python loop", 1, "off"),
    )
    lines += [
        f"- ceiling set by the reward model: its raw forward on N = {n} is "
        f"{floor.samples_per_s / loop.samples_per_s:,.1f}x the single-env loop's samples/s",
        f"- the environment's own work (reward=None, evaluate off): batched torch face "
        f"{bare.samples_per_s / bare_loop.samples_per_s:,.0f}x the single-env loop",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = (1, 4) if args.quick else (1, 16, 256, 1024)
    reward, reward_text = build_reward(args.reward, device)
    data = resolve_images("mnist-embedded")  # cached: shared with the environments in this process
    cases: list[Case] = []
    for n in sizes:
        cases += batched_cases(args, n, reward, data, device)
    cpu_reward = copy.deepcopy(reward).cpu() if isinstance(reward, nn.Module) else reward
    cases += single_cases(args, cpu_reward, data)
    for case in cases:
        case.calibrate(args.min_time)
    for _ in range(args.repeats):
        for case in cases:
            case.repeat()
    text = report(args, cases, reward_text, device, sizes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return text


if __name__ == "__main__":
    main()
