from hfrl.agents import Callback, EarlyStopping, make_config, make_trainer


class StopAfter(Callback):
    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def on_step(self, metrics: dict) -> bool:
        self.seen += 1
        return self.seen < self.n


def test_callback_can_stop_training(tiny_reward, tmp_path, tiny) -> None:
    stop = StopAfter(2)
    result = make_trainer(
        "reward-grad",
        make_config("reward-grad", **{**tiny, "steps": 10}),
        reward=tiny_reward,
        run_dir=tmp_path,
        callbacks=[stop],
    ).train()
    assert result.steps == 2 and stop.seen == 2


def test_eval_callback_logs_evaluator_metrics(tiny_reward, tmp_path, tiny) -> None:
    config = make_config("reward-grad", **{**tiny, "steps": 2, "eval_every": 1, "eval_size": 20})
    result = make_trainer("reward-grad", config, reward=tiny_reward, run_dir=tmp_path).train()
    assert "eval/target_good_rate" in result.history[0]
    assert (tmp_path / "eval.csv").read_text().count("\n") == 3


def test_early_stopping() -> None:
    es = EarlyStopping("eval/x", patience=2, mode="max")
    assert es.on_step({"eval/x": 0.5})
    assert es.on_step({"other": 1.0})
    assert es.on_step({"eval/x": 0.4})
    assert not es.on_step({"eval/x": 0.3})
