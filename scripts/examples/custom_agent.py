"""Your own fine-tuning agent, compared with hfrl's on the same task, reward and seeds.

An agent is a :class:`hfrl.agents.Trainer` subclass that implements ``update()``: the trainer owns the
loop, seeding, logging, checkpoints and the final evaluation, and gives the agent ``observe()`` (a batch of
noisy target images), ``act()`` (policy samples scored by the reward), ``regularizers()`` (the shared
``kl``, ``aux`` and ``consistency`` penalties) and ``optimize()``. Registered under a name, it takes part in
:func:`hfrl.experiments.compare.compare_agents` and ``hfrl bench`` like a built-in agent.

The agent here, ``elite``, is the cross-entropy method's update run online: each step it samples
``group_size`` outputs per input, keeps the best ``elite_fraction`` of each input's samples by reward and
raises their likelihood.

Run (the reward: a reward-model checkpoint, e.g. from ``hfrl reward train``, or ``labeler``, the oracle)::

    python scripts/examples/custom_agent.py --reward runs/reward/model --labels 200 --out runs/bench-elite
    hfrl bench --import scripts/examples/custom_agent.py --agents reward-grad,rwl,elite --reward runs/reward/model
    hfrl finetune --import scripts/examples/custom_agent.py --agent elite --set elite_fraction=0.5 \
        --reward runs/reward/model
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pandas as pd
import torch

from hfrl.agents import Trainer, TrainerConfig, register_agent
from hfrl.errors import ConfigError
from hfrl.experiments.compare import compare_agents


@dataclass
class EliteConfig(TrainerConfig):
    """Settings of the ``elite`` agent: every shared field, plus its own."""

    elite_fraction: float = 0.25
    """Share of each input's ``group_size`` samples, the best by reward, whose likelihood the policy raises."""
    group_size: int = 8
    """Samples per noisy input (the population of the cross-entropy method)."""
    kl: float = 0.0
    """KL weight (off: the ``aux`` and ``consistency`` terms keep the policy close, as for ``rwl``)."""
    lr: float = 3e-4
    """Adam learning rate."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.elite_fraction <= 1.0:
            raise ConfigError(f"elite_fraction must be in (0, 1], got {self.elite_fraction}")


class EliteTrainer(Trainer):
    """Raise the likelihood of the best samples for each input: an online cross-entropy method."""

    name = "elite"
    config_class = EliteConfig
    config: EliteConfig

    def update(self) -> dict[str, float]:  # noqa: D102
        k = self.config.group_size
        noisy = self.observe()  # (N, 1, H, W): N / k inputs, each repeated k times
        actions, reward = self.act(noisy)  # (N, 1, H, W) policy samples, (N,) their rewards
        n_elite = max(1, round(self.config.elite_fraction * k))
        best = reward.view(-1, k).topk(n_elite, dim=1).indices  # (N / k, n_elite) within each group
        elite = (best + k * torch.arange(len(best), device=best.device)[:, None]).flatten()
        nll = -self.policy.log_prob(noisy[elite], actions[elite]).mean() / noisy[0].numel()  # per pixel
        reg, metrics = self.regularizers(noisy)
        grad_norm = self.optimize(nll + reg, "elite likelihood")
        return {
            "losses/elite_nll": nll.item(),
            **metrics,
            "reward/mean": reward.mean().item(),
            "reward/elite_mean": reward[elite].mean().item(),
            "charts/grad_norm": grad_norm,
        }


register_agent(EliteTrainer.name, EliteTrainer)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reward", required=True, help="reward-model checkpoint, or 'labeler' (the oracle)")
    p.add_argument("--labels", type=int, default=None, help="labels behind the reward model (for the table)")
    p.add_argument(
        "--agents", default="reward-grad,rwl,elite", help="agents to compare (default: %(default)s)"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    p.add_argument("--steps", type=int, default=200, help="updates per run (default: 200)")
    p.add_argument("--batch-size", type=int, default=64, help="episodes per update (default: 64)")
    p.add_argument("--out", default="runs/bench-elite", help="output folder (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    return compare_agents(
        args.agents.split(","),
        reward=args.reward,
        seeds=range(args.seeds),
        base={"steps": args.steps, "batch_size": args.batch_size, "device": "cpu", "progress": False},
        overrides={"reward-grad": {"kl": 0.0}},  # per-agent settings: the seed paper's setting, no KL term
        out=args.out,
        labels_used=args.labels,
    )


if __name__ == "__main__":
    main()
