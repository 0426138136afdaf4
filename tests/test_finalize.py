"""``rnnpool-nas finalize``: the full training of a run's finalists, tested once; resume after an
interruption; ``export`` of a finalized trial; ``pareto`` shows the test figures; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnpool_nas.arch.spec import ArchSpec
from rnnpool_nas.cli import main
from rnnpool_nas.data.registry import SYNTHETIC_VAL
from rnnpool_nas.finalize import FinalizeConfig, final_results, run_finalize
from rnnpool_nas.finalize.runner import recipe
from rnnpool_nas.run.budget import Budget
from rnnpool_nas.run.store import RunStore

SPEC = {"name": "tiny-lines", "input": [16, 16, 1], "num_classes": 9, "stages": [
    {"type": "conv", "c": 8, "kernel": 3, "stride": 1},
    {"type": "rnnpool", "patch_size": 4, "stride": 2, "h1": 4, "h2": 4},
    {"type": "bottleneck", "t": 2, "c": 8, "n": 1, "s": 2, "kernel": 3},
    {"type": "pool", "kind": "avg"},
    {"type": "linear"},
]}


def _run(root: Path, statuses=("complete", "complete", "infeasible")) -> Path:
    """A search run over ``lines`` (16x16 inputs): trial 0 the most accurate, trial 1 cheaper."""
    store = RunStore.create(root, {"space": {"name": "test"}, "budget": Budget(ram_bytes=64 * 1024).to_dict(),
                                   "dataset": "lines", "data_dir": None, "limit": 300, "seed": 0,
                                   "objectives": ["accuracy", "peak_ram"], "val_fraction": 0.1})
    spec = ArchSpec.from_dict(SPEC)
    for number, status in enumerate(statuses):
        trial = store.trial_dir(number)
        (trial / "arch.json").write_text(spec.to_json())
        store.record({"trial": number, "status": status, "accuracy": [0.6, 0.5, 0.0][number],
                      "peak_ram_bytes": [3000, 2000, 10**6][number], "madds": 1e5, "params": 1000, "model_bytes": 1000,
                      "latency_ms": 1.0, "epochs_trained": 1, "feasible": status != "infeasible",
                      "spec_path": str(trial / "arch.json"), "checkpoint_path": ""})
    return root


def _stop_after_first_epoch(run: Path, number: int, cfg: FinalizeConfig) -> None:
    """What a kill during epoch 2 leaves behind: the epoch-1 checkpoint and a running metrics.json."""
    from rnnpool_nas.finalize.runner import _blind, _load
    from rnnpool_nas.train.loop import TrainConfig
    from rnnpool_nas.train.trainer import Trainer

    rec = recipe(cfg, "lines")
    out = run / "final" / f"{number:04d}"
    out.mkdir(parents=True)
    (out / "arch.json").write_text((run / "trials" / f"{number:04d}" / "arch.json").read_text())
    spec = ArchSpec.from_dict(SPEC)
    config = {"dataset": "lines", "data_dir": None, "seed": 0, "recipe": rec}
    trainer = _blind(Trainer)(spec, _load(config, spec), TrainConfig(epochs=rec["epochs"], batch_size=rec["batch_size"],
                              lr=rec["lr"], warmup_epochs=rec["warmup_epochs"], seed=0, threads=2),
                              checkpoint=out / "checkpoint.pt")
    result = trainer.fit(callback=lambda m: False)
    assert result.status == "stopped" and result.epochs_trained == 1
    (out / "metrics.json").write_text(json.dumps({"trial": number, "status": "running", "recipe": rec,
                                                  "epochs_trained": 1}))


def test_finalize_end_to_end_resume_and_export(ray_session, tmp_path, capsys):
    run = _run(tmp_path / "run")
    cfg = FinalizeConfig(run=str(run), top=2, epochs=2, limit=256, workers=2)
    _stop_after_first_epoch(run, 1, cfg)
    first = torch.load(run / "final" / "0001" / "checkpoint.pt", weights_only=True)["history"][0]

    lines: list[str] = []
    result = run_finalize(cfg, printer=lines.append)
    assert [f["trial"] for f in result.finalists] == [0, 1]  # the front, most accurate first; 2 is over budget
    assert any("trial 1: resuming its interrupted finalize from epoch 1" in line for line in lines)
    assert all(f["status"] == "complete" for f in result.finalists), lines
    for number in (0, 1):
        out = run / "final" / f"{number:04d}"
        doc = json.loads((out / "metrics.json").read_text())
        assert doc["status"] == "complete" and doc["epochs"] == 2 and doc["epochs_trained"] == 2
        assert doc["test_images"] == SYNTHETIC_VAL  # the whole test set, scored once
        assert doc["train_images"] == 256
        assert 0.0 <= doc["int8_test_accuracy"] <= 1.0 and 0.0 <= doc["float_test_accuracy"] <= 1.0
        assert [c["epoch"] for c in doc["curve"]] == [1, 2]
        assert all("val_accuracy" not in c for c in doc["curve"])  # no peeking at the test set while training
        state = torch.load(out / "checkpoint.pt", weights_only=True)  # tensors and plain data only
        assert state["epoch"] == 2
    resumed = torch.load(run / "final" / "0001" / "checkpoint.pt", weights_only=True)["history"][0]
    assert [resumed[k] for k in ("train_loss", "seconds", "lr")] == [first[k] for k in ("train_loss", "seconds", "lr")]
    # (epoch 1 was not trained again)
    summary = json.loads((run / "final" / "final.json").read_text())
    assert [f["trial"] for f in summary["finalists"]] == [0, 1]
    assert any("test int8" in line for line in lines)

    # a second finalize keeps every finished finalist: nothing is retrained
    before = (run / "final" / "0000" / "metrics.json").read_text()
    lines.clear()
    run_finalize(cfg, printer=lines.append)
    assert (run / "final" / "0000" / "metrics.json").read_text() == before
    assert any("trial 0: already finalized" in line for line in lines)
    assert set(final_results(run)) == {0, 1}

    # pareto shows the search's accuracy next to the test figures
    capsys.readouterr()
    assert main(["pareto", str(run)]) == 0
    table = capsys.readouterr().out
    assert "test float" in table and "test int8" in table
    assert main(["pareto", str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["finalists"]
    by_trial = {r["trial"]: r for r in rows}
    assert by_trial[0]["final_int8_accuracy"] == json.loads((run / "final" / "0000" / "metrics.json").read_text())[
        "int8_test_accuracy"]

    # export ships the finalized model, scored on the same test set with the same int8 figures
    out = tmp_path / "c"
    assert main(["export", str(run), "--trial", "0", "--out", str(out), "--val-images", "8", "--no-build"]) == 0
    doc = json.loads((out / "export.json").read_text())
    final = json.loads((run / "final" / "0000" / "metrics.json").read_text())
    assert doc["source"].endswith("(finalized)")
    assert doc["accuracy"]["images"] == SYNTHETIC_VAL
    assert doc["accuracy"]["int8_accuracy"] == final["int8_test_accuracy"]

    # the report shows the final front
    from rnnpool_nas.report.page import render_report
    from rnnpool_nas.report.run import RunView

    html = render_report(RunView.load(run))
    assert "Final front" in html and "test int8" in html


def test_changed_recipe_on_an_interrupted_finalist_is_refused(tmp_path, capsys):
    run = _run(tmp_path / "run")
    _stop_after_first_epoch(run, 0, FinalizeConfig(run=str(run), epochs=2, limit=64))
    code = main(["finalize", str(run), "--trial", "0", "--epochs", "3", "--limit", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--epochs 2" in err[0]


@pytest.mark.parametrize("case,needle", [
    ("not-a-run", "is not a run directory"),
    ("no-complete", "no complete trial"),
    ("unknown-trial", "no trained trial 7"),
    ("bad-top", "--top must be at least 1"),
])
def test_bad_input_is_one_line(case, needle, tmp_path, capsys):
    if case == "not-a-run":
        (tmp_path / "x").mkdir()
        argv = ["finalize", str(tmp_path / "x")]
    elif case == "no-complete":
        argv = ["finalize", str(_run(tmp_path / "run", statuses=("failed", "infeasible", "infeasible")))]
    elif case == "unknown-trial":
        argv = ["finalize", str(_run(tmp_path / "run")), "--trial", "7"]
    else:
        argv = ["finalize", str(_run(tmp_path / "run")), "--top", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_plan_epochs_fits_the_time_budget():
    """Each finalist gets budget / rounds of workers, less the overhead, in whole epochs at its
    own speed; capped by --epochs, never below 1."""
    from rnnpool_nas.finalize.runner import PLAN_OVERHEAD_S, PLAN_SLOWDOWN, plan_epochs

    budget = 1200.0
    plan = plan_epochs({0: 1000.0, 1: 250.0}, 10_000, budget, workers=2, max_epochs=30)
    assert plan == {0: 30, 1: int((budget - PLAN_OVERHEAD_S) * 250 / PLAN_SLOWDOWN / 10_000)}  # 24
    # three finalists on two workers run in two rounds: each gets half the budget
    plan = plan_epochs({0: 250.0, 1: 250.0, 2: 250.0}, 10_000, budget, workers=2, max_epochs=30)
    assert plan == {n: int((budget / 2 - PLAN_OVERHEAD_S) * 250 / PLAN_SLOWDOWN / 10_000) for n in range(3)}  # 11
    assert plan_epochs({0: 1.0}, 10_000, 30.0, workers=1, max_epochs=30) == {0: 1}
    # what the plan promises: rounds x (epochs x epoch time + overhead) within the budget, even when
    # the epochs run PLAN_SLOWDOWN times slower than the search measured
    speeds = {0: 900.0, 1: 400.0, 2: 130.0}
    plan = plan_epochs(speeds, 60_000, budget, workers=2, max_epochs=50)
    assert all(plan[n] * 60_000 / speeds[n] * PLAN_SLOWDOWN + PLAN_OVERHEAD_S <= budget / 2
               for n in speeds if plan[n] > 1)


def _measured(run: Path, speeds: dict[int, float]) -> None:
    """The search's metrics.json for these trials, with the training speed it measured."""
    for number, speed in speeds.items():
        (run / "trials" / f"{number:04d}" / "metrics.json").write_text(json.dumps(
            {"status": "complete", "history": [{"epoch": 1, "images_per_second": speed},
                                               {"epoch": 2, "images_per_second": speed * 3}]}))


def test_time_budget_plans_each_finalists_epochs_from_the_search(tmp_path):
    from rnnpool_nas.finalize.runner import PLAN_OVERHEAD_S, PLAN_SLOWDOWN, _planned_recipes, select_finalists

    run = _run(tmp_path / "run")
    _measured(run, {0: 5.0, 1: 50.0})  # images per second: 10 and 100 on average
    cfg = FinalizeConfig(run=str(run), top=2, epochs=20, limit=256, time_budget=PLAN_OVERHEAD_S + 256 * PLAN_SLOWDOWN + 1)
    store = RunStore.open(run)
    lines: list[str] = []
    recipes = _planned_recipes(store, cfg, select_finalists(store, cfg), recipe(cfg, "lines"), "lines", lines.append)
    # 256 training images: trial 0 trains 10 images/s (25.6 s an epoch), trial 1 100
    assert {n: r["epochs"] for n, r in recipes.items()} == {0: 10, 1: 20}
    assert all(r["time_budget_s"] == cfg.time_budget and r["lr"] == recipe(cfg, "lines")["lr"] for r in recipes.values())
    assert "trial 0 10 epoch(s)" in lines[0] and "trial 1 20 epoch(s)" in lines[0]
    # the plan comes from the run directory alone: made again, it is the same (resume)
    assert _planned_recipes(store, cfg, select_finalists(store, cfg), recipe(cfg, "lines"), "lines",
                            lines.append) == recipes
    store.close()


@pytest.mark.parametrize("argv,needle", [
    (["--time-budget", "soon"], "--time-budget: bad duration 'soon'"),
    (["--time-budget", "20min"], "trial 0 has none in its metrics.json"),
])
def test_time_budget_bad_input_is_one_line(argv, needle, tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["finalize", str(run), "--top", "2", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (run / "final").exists() or not any((run / "final").iterdir())


@pytest.mark.slow
def test_int8_loss_over_tolerance_fine_tunes_with_int8_rounding(tmp_path, capsys):
    """Forced (tolerance below any drop): QAT runs on training images' verdict, the checkpoint
    holds the fine-tuned weights, and export ships exactly the scored int8 model."""
    from rnnpool_nas.finalize.runner import QAT_EPOCHS, train_and_test

    run = _run(tmp_path / "run")
    cfg = FinalizeConfig(run=str(run), epochs=1, limit=128, int8_tolerance=-1.0)
    out = run / "final" / "0000"
    out.mkdir(parents=True)
    (out / "arch.json").write_text((run / "trials" / "0000" / "arch.json").read_text())
    config = {"number": 0, "dataset": "lines", "data_dir": None, "seed": 0, "recipe": recipe(cfg, "lines"), "threads": 2}
    reports: list[dict] = []
    metrics = train_and_test(config, out, reports.append, lambda m: None)
    assert metrics["qat"]["epochs"] == QAT_EPOCHS and len(metrics["qat"]["train_loss"]) == QAT_EPOCHS
    assert metrics["ptq_train_check"]["images"] == 128  # the verdict comes from training images
    assert any(r.get("phase") == "qat" for r in reports)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["qat"] == {"epochs": QAT_EPOCHS, "lr": 0.005}
    (out / "metrics.json").write_text(json.dumps({**metrics, "status": "complete", "recipe": config["recipe"]}))
    assert main(["export", str(run), "--trial", "0", "--out", str(tmp_path / "c"), "--val-images", "4", "--no-build"]) == 0
    doc = json.loads((tmp_path / "c" / "export.json").read_text())
    assert doc["accuracy"]["int8_accuracy"] == metrics["int8_test_accuracy"]
