"""The trainer: it learns, is deterministic, resumes exactly, fails gracefully; `train` CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnpool_nas.arch import get_preset
from rnnpool_nas.cli import main
from rnnpool_nas.data import load_dataset
from rnnpool_nas.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def lines():
    return load_dataset("lines", limit=1024, size=28)


def _spec(classes=9):
    return get_preset("rnnpool-tiny", classes=classes, width=0.5)


def _config(**kw):
    base = dict(epochs=2, batch_size=64, lr=0.05, seed=3, threads=2, val_limit=256)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


def test_learns_and_reports_every_epoch(lines):
    seen = []
    result = Trainer(_spec(), lines, _config(epochs=4)).fit(callback=seen.append)
    assert result.status == "complete" and result.epochs_trained == 4
    assert [m.epoch for m in seen] == [1, 2, 3, 4]
    assert seen[-1].val_accuracy > 3 / lines.num_classes  # well above chance
    assert seen[-1].train_loss < seen[0].train_loss
    assert all(m.images_per_second > 0 for m in seen)


def test_same_seed_same_metrics(lines):
    a = Trainer(_spec(), lines, _config()).fit()
    b = Trainer(_spec(), lines, _config()).fit()
    c = Trainer(_spec(), lines, _config(seed=4)).fit()
    assert [m.val_loss for m in a.history] == [m.val_loss for m in b.history]
    assert [m.train_loss for m in a.history] != [m.train_loss for m in c.history]


def test_resume_equals_uninterrupted(lines, tmp_path):
    full = Trainer(_spec(), lines, _config(epochs=3))
    full_result = full.fit()
    ckpt = tmp_path / "ckpt.pt"
    first = Trainer(_spec(), lines, _config(epochs=3), checkpoint=ckpt)
    stopped = first.fit(callback=lambda m: m.epoch < 2)  # interrupted after epoch 2
    assert stopped.status == "stopped" and stopped.epochs_trained == 2
    resumed = Trainer(_spec(), lines, _config(epochs=3), checkpoint=ckpt, resume=True)
    result = resumed.fit()
    assert result.status == "complete" and result.epochs_trained == 3
    assert [m.val_loss for m in result.history] == [m.val_loss for m in full_result.history]
    assert torch.equal(_weights(resumed.model), _weights(full.model))


def test_step_budget(lines):
    result = Trainer(_spec(), lines, _config(epochs=5, max_steps=20)).fit()
    assert result.status == "complete" and result.epochs_trained == 2  # 16 steps per epoch


def test_nan_loss_fails_the_run_without_raising(lines):
    result = Trainer(_spec(), lines, _config(lr=1e6)).fit()
    assert result.status == "failed"
    assert "loss became" in result.reason


def test_exceptions_fail_the_run_without_raising(lines, monkeypatch):
    trainer = Trainer(_spec(), lines, _config())
    monkeypatch.setattr(trainer, "evaluate", lambda: (_ for _ in ()).throw(MemoryError("out of memory")))
    result = trainer.fit()
    assert result.status == "failed" and "MemoryError: out of memory" in result.reason


def test_train_command_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--preset", "rnnpool-tiny", "--width", "0.5", "--dataset", "lines", "--limit", "512",
                 "--epochs", "2", "--batch-size", "64", "--out", str(out), "--threads", "2"])
    assert code == 0
    assert (out / "checkpoint.pt").exists() and (out / "arch.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["result"]["status"] == "complete" and len(metrics["result"]["history"]) == 2
    assert 0 <= metrics["int8"]["int8_accuracy"] <= 1 and metrics["int8"]["agreement"] > 0.5
    text = capsys.readouterr().out
    assert "epoch 2/2" in text and "int8: accuracy" in text
    # an existing, non-empty folder is never overwritten
    assert main(["train", "--preset", "rnnpool-tiny", "--dataset", "lines", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--dataset", "no-such-set"], "unknown data set"),
        (["--dataset", "lines", "--epochs", "0"], "--epochs must be positive"),
        (["--dataset", "idx:/nonexistent"], "/nonexistent"),
    ],
)
def test_train_bad_input(argv, message, capsys, tmp_path):
    code = main(["train", "--preset", "rnnpool-tiny", "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_cosine_schedule_reaches_zero(lines):
    trainer = Trainer(_spec(), lines, _config(epochs=2, warmup_epochs=0.5))
    factor = trainer._schedule()
    steps = trainer._total_steps()
    assert factor(0) == pytest.approx(1 / 8)  # 16 steps an epoch, 8 of warm-up
    assert factor(7) == pytest.approx(1.0)
    assert factor(steps) == pytest.approx(0.0, abs=1e-12) and not math.isnan(factor(steps + 5))
