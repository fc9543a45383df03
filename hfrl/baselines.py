"""The references every feedback result is read against: source generator, label-free, supervised.

A feedback result means something only beside what the user could get without feedback, measured on the
same inputs by the same independent evaluator. :func:`reference_evaluations` evaluates the label-free
candidates a run has at hand — a classical denoiser tuned on the source domain's noisy/clean pairs, the
run's own self-supervised denoiser — and the supervised upper bound that ``scripts/bench_bounds.py``
ships for the task, on exactly the inputs of :meth:`hfrl.agents.Trainer.finish` (test split, noise
seed 0). ``scripts/bench_bounds.py`` runs the full set of label-free baselines (every blind-spot
variant, trained longer) for the README's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from hfrl.classical import tune_on_source
from hfrl.data import Domains
from hfrl.evaluation import Evaluation, evaluate_generator
from hfrl.judges import Evaluator
from hfrl.noise import NoiseModel
from hfrl.tasks import ASSETS, Task

SOURCE = "source generator"
SUPERVISED = "supervised (clean targets, upper bound)"


def supervised_asset(task: Task) -> Path:
    """Where ``scripts/bench_bounds.py --save-supervised`` ships a task's supervised generator."""
    return ASSETS / ("supervised_" + task.name.replace("-", "_"))


@dataclass
class References:
    """Test-split evaluations of the references, all on the same inputs.

    Attributes:
        source: The source generator.
        label_free: Each label-free candidate by name.
        supervised: The supervised upper bound, where one is shipped for the task.
    """

    source: Evaluation
    label_free: dict[str, Evaluation] = field(default_factory=dict)
    supervised: Evaluation | None = None

    def best_label_free(self) -> tuple[str, Evaluation]:
        """The best of the source generator and the label-free candidates, by target good-rate."""
        candidates = {SOURCE: self.source, **self.label_free}
        name = max(candidates, key=lambda k: candidates[k].target.summary()["good_rate"])
        return name, candidates[name]

    def four_rows(self, feedback_name: str, feedback: Evaluation) -> dict[str, Evaluation]:
        """Source generator, best label-free, the feedback result and (if shipped) the supervised bound."""
        best_name, best = self.best_label_free()
        rows = {SOURCE: self.source, f"best label-free: {best_name}": best, feedback_name: feedback}
        if self.supervised is not None:
            rows[SUPERVISED] = self.supervised
        return rows


def reference_evaluations(
    source: Evaluation,
    domains: Domains,
    noise: NoiseModel,
    evaluator: Evaluator,
    *,
    task: Task | None = None,
    denoiser: nn.Module | None = None,
    denoiser_name: str = "self-supervised denoiser",
    seed: int = 0,
) -> References:
    """Evaluate the label-free candidates and the supervised bound on the trainer's final inputs.

    Args:
        source: The source generator's test-split evaluation (``Trainer.initial_evaluation()``).
        domains: The run's domains.
        noise: The run's noise model.
        evaluator: The independent evaluator.
        task: The run's task, whose shipped supervised generator is the upper bound (if the task's data
            and image size are the run's).
        denoiser: A label-free denoiser the run trained (e.g. the one inside the similarity reward).
        denoiser_name: What to call it.
        seed: Seed of the noise on the source pairs the classical denoiser is tuned on.
    """
    from hfrl.checkpoint import load_checkpoint

    def evaluate(generator: nn.Module) -> Evaluation:
        return evaluate_generator(generator, domains, noise, evaluator, split="test", seed=0)

    label_free: dict[str, Evaluation] = {}
    choice = tune_on_source(domains, noise, seed)
    label_free[f"classical ({choice.denoiser.method})"] = evaluate(choice.denoiser)
    if denoiser is not None:
        label_free[denoiser_name] = evaluate(denoiser)
    supervised = None
    if task is not None and supervised_asset(task).with_suffix(".json").exists():
        generator, _ = load_checkpoint(supervised_asset(task), kind="generator")
        if tuple(generator.config.image_shape) == tuple(source.target.clean.shape[-3:]):
            supervised = evaluate(generator)
    return References(source, label_free, supervised)


__all__ = ["SOURCE", "SUPERVISED", "References", "reference_evaluations", "supervised_asset"]
