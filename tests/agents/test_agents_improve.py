"""Slow: every agent raises the evaluator's target good-rate while keeping the source skill.

The reward model is what a user gets from 200 synthetic labels of the shipped generator's outputs: the
default similarity reward (a self-supervised denoiser of the noisy target inputs plus a logistic head
fitted to the labels). The preference baseline learns from pairwise labels instead. Each agent runs with
its defaults (plus a step budget); the verdicts come from the independent evaluator on the test split.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hfrl.agents import make_config, make_trainer
from hfrl.checkpoint import load_checkpoint
from hfrl.data import Domains, load_embedded_mnist
from hfrl.evaluation import generate
from hfrl.judges import SyntheticLabeler, asset_path
from hfrl.noise import make_noise
from hfrl.rewards import (
    DenoiserConfig,
    LabelledSamples,
    RewardModelConfig,
    RewardTrainingConfig,
    make_reward_model,
    save_reward_model,
    train_denoiser,
    train_reward_model,
)

pytestmark = pytest.mark.slow

LABELS = 200


@pytest.fixture(scope="module")
def similarity_reward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A similarity reward model from 200 labels of the shipped generator's target outputs."""
    train = Domains(load_embedded_mnist()).target("train")
    generator, _ = load_checkpoint(asset_path("denoiser_source"), kind="generator")
    noisy = make_noise()(train.images, torch.Generator().manual_seed(1000))
    denoiser, _ = train_denoiser(noisy, DenoiserConfig(steps=1000, seed=0))
    outputs = generate(generator, noisy)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(5))[:LABELS]
    good = SyntheticLabeler.from_pretrained().is_good(outputs[pick], train.images[pick], train.labels[pick])
    labelled = LabelledSamples(noisy[pick], outputs[pick], good.float())
    model = make_reward_model(RewardModelConfig(arch="similarity"), 0, denoiser=denoiser)
    model = train_reward_model(model, labelled, RewardTrainingConfig(seed=0)).model
    path = tmp_path_factory.mktemp("reward") / "similarity"
    save_reward_model(path, model)
    return path


AGENT_STEPS = {
    "reward-grad": 200,
    "reinforce": 200,
    "ppo": 100,
    "rwl": 200,
    "dpo": 200,
    "sb3-ppo": 100,
    "sb3-a2c": 100,
}


MIN_GAIN = {
    "reward-grad": 0.25,
    "reinforce": 0.12,
    "ppo": 0.07,
    "dpo": 0.08,
    "rwl": 0.03,
    "sb3-ppo": 0.03,
    "sb3-a2c": 0.025,
}
"""Target good-rate gain each agent must show. Measured once with this file's reward, seed and budgets
(2-core CPU shared with other jobs, 1 thread), from 52.4 %: reward-grad 91.1 % (+38.7 points), reinforce
72.9 % (+20.4), ppo 64.0 % (+11.6), dpo 66.2 % (+13.8), rwl 57.7 % (+5.3), sb3-ppo 57.9 % (+5.4), sb3-a2c
57.1 % (+4.7); source PSNR change between -0.20 and +0.05 dB. Each margin is about 60 % of the measured gain,
so a method that stops learning fails while the evaluator's sampling noise on 1,350 test images (a
standard error of about 1.4 points) does not."""


@pytest.mark.parametrize("name", sorted(AGENT_STEPS))
def test_agent_raises_target_good_rate_and_keeps_source_psnr(
    name: str, similarity_reward: Path, tmp_path: Path
) -> None:
    config = make_config(
        name,
        task="digits-white",  # the task the reward above was fitted on
        steps=AGENT_STEPS[name],
        device="cpu",
        progress=False,
        checkpoint_every=0,
        eval_every=0,
    )
    reward = None if name == "dpo" else str(similarity_reward)
    final = make_trainer(name, config, reward=reward, run_dir=tmp_path).train().final
    assert final["target_good_rate_after"] >= final["target_good_rate_before"] + MIN_GAIN[name], final
    assert final["source_psnr_change"] >= -0.5, final
