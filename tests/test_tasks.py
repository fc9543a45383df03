import dataclasses

import gymnasium as gym
import pytest

import hfrl.envs  # noqa: F401
from hfrl.agents import make_config
from hfrl.errors import ConfigError
from hfrl.noise import CorrelatedGaussianNoise, GaussianNoise
from hfrl.pretrain import PretrainConfig
from hfrl.runconfig import DemoConfig, resolve_config
from hfrl.tasks import DEFAULT_TASK, TASKS, get_task


def test_shipped_tasks_are_complete() -> None:
    assert DEFAULT_TASK == "digits-correlated" and {
        "digits-correlated",
        "digits-white",
        "fashion-white",
    } <= set(TASKS)
    for name in ("digits-correlated", "digits-white"):
        task = get_task(name)
        assert task.generator_path().with_suffix(".json").exists(), f"{name}: source generator not shipped"
        task.noise_model()
    assert isinstance(get_task().noise_model(), CorrelatedGaussianNoise)
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        get_task("nope")


def test_configs_take_the_task_and_explicit_fields_override_it() -> None:
    white = make_config("reward-grad", task="digits-white")
    assert (white.noise, white.noise_level) == ("gaussian", 0.5)
    assert white.generator.endswith("denoiser_source")
    default = make_config("reward-grad")
    assert default.task == DEFAULT_TASK and default.noise.startswith("correlated")
    assert make_config("reward-grad", task="digits-white", noise_level=0.3).noise_level == 0.3
    # a change of task moves every setting the change does not set itself
    moved = default.replace(task="digits-white")
    assert (moved.noise, moved.noise_level, moved.generator) == (
        white.noise,
        white.noise_level,
        white.generator,
    )
    assert default.replace(task="digits-white", noise_level=0.2).noise_level == 0.2
    demo = resolve_config(None, {"task": "digits-white"}, DemoConfig)
    assert (demo.noise, demo.noise_level) == ("gaussian", 0.5)
    assert PretrainConfig(task="digits-white").noise == "gaussian"
    with pytest.raises(ConfigError, match="unknown noise model"):
        make_config("reward-grad", noise="blur")


def test_environment_takes_a_task_by_name() -> None:
    env = gym.make("hfrl/Denoise-v0", task="digits-white", reward=None, evaluate=False)
    assert isinstance(env.unwrapped.task.noise, GaussianNoise) and env.unwrapped.task.noise.level == 0.5
    default = gym.make("hfrl/Denoise-v0", reward=None, evaluate=False).unwrapped.task
    assert default.noise == get_task().noise_model()
    explicit = gym.make("hfrl/Denoise-v0", task="digits-white", noise_level=0.2, reward=None, evaluate=False)
    assert explicit.unwrapped.task.noise.level == 0.2
    assert dataclasses.asdict(get_task("digits-white"))["target_classes"] == tuple(range(1, 10))


def test_task_fields_are_declared_once_and_shared_by_every_run_config() -> None:
    from hfrl.agents.config import PPOConfig, TrainerConfig
    from hfrl.fields import field_docs, field_types
    from hfrl.tasks import DataConfig, TaskConfig

    for base, users in ((DataConfig, (PretrainConfig, DemoConfig, TrainerConfig, PPOConfig)),
                        (TaskConfig, (DemoConfig, TrainerConfig, PPOConfig))):  # fmt: skip
        for f in dataclasses.fields(base):
            for cls in users:
                assert issubclass(cls, base)
                assert field_docs(cls)[f.name] == field_docs(base)[f.name], (cls, f.name)
                assert field_types(cls)[f.name] == field_types(base)[f.name], (cls, f.name)
