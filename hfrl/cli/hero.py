"""``hfrl hero``: online fine-tuning of the digits DDPM from human feedback (HERO and baselines).

The target is "only digit K", which the shipped all-digits DDPM rarely draws. Each round
samples a batch, asks for feedback through the feedback store — the synthetic labeler headless (default),
or people on the labelling page with ``--human`` (served by this command) — and updates the model:

* ``--method hero``: mark good ones and the best; triplet embedding reward, PPO, noise recycling;
* ``--method rwl``: good/bad; reward-weighted denoising + beta x pre-training loss (Lee et al. 2023);
* ``--method ddpo``: good/bad; PPO on a learned reward with the DPOK KL;
* ``--method d3po``: pick the better of two; DPO on the chain's steps, no reward model;
* ``--method flow-grpo``: good/bad; PPO on groups of chains from one noise, group-relative advantages;
* ``--method nft``: good/bad; DiffusionNFT, positive/negative implicit policies on finished samples;
* ``--method awm``: good/bad; the denoising loss weighted by a learned reward's advantages;
* ``--method best-of-n``: good/bad; no fine-tuning, sample N and keep the learned reward's best.

``--model flow`` fine-tunes the shipped rectified-flow model (``flow_digits``) instead of the DDPM, with
Flow-GRPO's SDE sampler as the policy; every method runs on both kinds.

The run directory holds ``config.json``, ``rounds.csv``, ``grids/``, ``model.*``, ``reward.*``,
``feedback.sqlite`` and ``evaluation.json`` (success rate by the independent evaluator before and after).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from hfrl.cli.common import (
    add_device,
    add_out,
    add_quiet,
    add_seed,
    non_negative_float,
    positive_int,
)
from hfrl.errors import ConfigError

METHOD_CHOICES = ("hero", "rwl", "ddpo", "d3po", "flow-grpo", "nft", "awm", "best-of-n")


def _digit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a digit 0-9, got {text!r}") from None
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"expected a digit 0-9, got {value}")
    return value


def _unit(text: str) -> float:
    value = non_negative_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl hero``."""
    p = sub.add_parser(
        "hero",
        help="online fine-tuning of a DDPM from human feedback (HERO and baselines)",
        description="Fine-tune the all-digits DDPM to draw only digit K from feedback given in rounds: by the "
        "synthetic labeler (default) or by people on the labelling page (--human). Reports the success rate "
        "judged by an independent evaluator.",
    )
    p.add_argument("--method", choices=METHOD_CHOICES, default="hero", help="(default: %(default)s)")
    p.add_argument(
        "--target-class", type=_digit, default=7, help="the digit K people want (default: %(default)s)"
    )
    p.add_argument("--rounds", type=positive_int, default=10, help="feedback rounds (default: %(default)s)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="samples labelled per round; d3po asks about half as many pairs (default: hero 32, others 64)",
    )
    p.add_argument(
        "--model", default=None, metavar="ddpm|flow|PATH",
        help="model kind to fine-tune: ddpm (--ddpm, default), flow (the shipped flow_digits), or a checkpoint "
        "of either kind",
    )  # fmt: skip
    p.add_argument(
        "--ddpm", default=None, help="DDPM checkpoint to fine-tune (default: the shipped ddpm_digits)"
    )
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps per chain (default: 10)")
    p.add_argument(
        "--lr", type=non_negative_float, default=None, help="learning rate (default: per method and adapter)"
    )
    p.add_argument("--kl", type=non_negative_float, default=None, help="KL weight to the base model (DPOK)")
    p.add_argument(
        "--adapter", choices=("full", "lora"), default=None,
        help="train every weight (full) or LoRA adapters on a frozen DDPM (lora); default: lora for hero, full for the others",
    )  # fmt: skip
    p.add_argument(
        "--lora-rank", type=positive_int, default=None, help="rank of the LoRA adapters (default 8)"
    )
    p.add_argument("--epsilon", type=_unit, default=None, help="HERO noise-recycling epsilon (default 0.1)")
    p.add_argument("--best-share", type=_unit, default=None, help="HERO share of noises from the best (0.5)")
    p.add_argument(
        "--eval-samples", type=int, default=None, help="evaluator samples after each round (default 128)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="any other config field by name, e.g. --set policy_epochs=1 (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--resume", default=None, metavar="RUN_DIR",
        help="continue a stopped or killed run from its last finished round, with the same options (only "
        "--rounds, --device and --label-timeout may change); labels it already got are reused",
    )  # fmt: skip
    people = p.add_argument_group("people")
    people.add_argument("--human", action="store_true", help="serve the labelling page and wait for people")
    people.add_argument("--host", default="127.0.0.1", help="labelling page address (default: %(default)s)")
    people.add_argument("--port", type=int, default=8765, help="labelling page port (0: any free one)")
    people.add_argument(
        "--label-timeout", type=non_negative_float, default=None, help="seconds to wait for people per round"
    )
    people.add_argument("--db", default=None, help="feedback database (default: RUN/feedback.sqlite)")
    add_seed(p)
    add_device(p)
    add_out(p, "hero")
    add_quiet(p)
    p.set_defaults(func=run)


def _default_adapter(method: str) -> str:
    from hfrl.agents.hero import METHODS

    return str(METHODS[method].config_class.adapter)


def config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the arguments set (``None`` options keep the method's default)."""
    fields: dict[str, Any] = {"target_class": args.target_class, "rounds": args.rounds, "seed": args.seed,
                              "device": args.device}  # fmt: skip
    optional = {
        "batch_size": args.batch_size, "model": args.model, "ddpm": args.ddpm, "num_inference_steps": args.steps, "lr": args.lr,
        "kl": args.kl, "adapter": args.adapter, "lora_rank": args.lora_rank, "epsilon": args.epsilon,
        "best_share": args.best_share, "eval_samples": args.eval_samples, "label_timeout": args.label_timeout,
    }  # fmt: skip
    fields.update({k: v for k, v in optional.items() if v is not None})
    from hfrl.agents.hero import METHODS
    from hfrl.fields import read_field

    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set takes FIELD=VALUE, got {item!r}")
        fields[name.strip()] = read_field(METHODS[args.method].config_class, name.strip(), value)
    if "lora_rank" in fields and fields.get("adapter", _default_adapter(args.method)) != "lora":
        raise ConfigError("--lora-rank sets the LoRA adapters' rank; add --adapter lora")
    if args.method != "hero":
        for name in ("epsilon", "best_share"):
            if name in fields:
                raise ConfigError(
                    f"--{name.replace('_', '-')} is a HERO setting; --method {args.method} has none"
                )
    return fields


def run(args: argparse.Namespace) -> int:
    """Run the rounds; print one line per round and the before/after success rate."""
    from hfrl.agents.hero import make_online_config, make_online_trainer
    from hfrl.runs import make_run_dir

    config = make_online_config(args.method, **config_fields(args))
    if args.resume is not None and not (Path(args.resume) / "state.safetensors").is_file():
        raise ConfigError(f"--resume {args.resume}: no online run checkpoint (state.safetensors) there")
    out = Path(args.resume) if args.resume is not None else make_run_dir(args.out, f"hero-{args.method}")
    db = Path(args.db) if args.db else out / "feedback.sqlite"
    server = thread = None
    if args.human:
        from hfrl.feedback.server import prepare_server

        server = prepare_server(db, args.host, args.port)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        what = "pick the better of each pair" if args.method == "d3po" else "mark each sample good or bad"
        extra = "; mark the best one (x)" if args.method == "hero" else ""
        print(f"want: only the digit {config.target_class}. {what}{extra}", flush=True)

    def progress(row: dict[str, float]) -> None:
        if args.quiet:
            return
        rate = row.get("success_rate", float("nan"))
        good = row.get("batch/good_rate", float("nan"))
        print(
            f"round {int(row['round']):3d}  labels {int(row['labels_used']):5d}  success {rate:6.1%}  "
            f"batch good {good:6.1%}",
            flush=True,
        )

    try:
        trainer = make_online_trainer(
            args.method,
            config,
            run_dir=out,
            db=db,
            labeler=None if args.human else "synthetic",
            progress=progress,
        )
        if args.resume is not None:
            trainer.load_state()
        result = trainer.train()
    finally:
        if server is not None and thread is not None:
            server.stop()
            thread.join(timeout=10)
    before, after = result.final["before"], result.final["after"]
    if before and after:
        line = (
            f"{args.method}: success {before['success_rate']:.1%} -> {after['success_rate']:.1%} (evaluator), "
            f"digits {before['digit_rate']:.1%} -> {after['digit_rate']:.1%}, {result.final['labels_used']} labels"
        )
        if "success_rate_recycled" in after:
            line += f"; with recycled noise {after['success_rate_recycled']:.1%}"
        print(line)
    print(f"wrote {out / 'evaluation.json'} and {out / 'model.safetensors'}")
    return 0
