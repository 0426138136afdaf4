"""The search end to end on a tiny space (one shared Ray session), its bookkeeping, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from rnnpool_nas.cli import main
from rnnpool_nas.run.budget import Budget, parse_bytes
from rnnpool_nas.run.pareto import pareto_front
from rnnpool_nas.search.runner import SearchConfig, make_ask_tell, run_search, train_trial
from rnnpool_nas.search.tune_searcher import TuneSearcher
from rnnpool_nas.search.space import SearchSpace
from rnnpool_nas.run.store import RunStore

from .conftest import TESTS

SPACE = str(TESTS / "data" / "tiny_space.yaml")
BUDGET = parse_bytes("2KB")  # about half of the tiny space is over it


def _config(out, **kw) -> SearchConfig:
    base = dict(space=SPACE, budget=Budget(ram_bytes=BUDGET), out=str(out), trials=8, epochs=1, workers=2,
                limit=256, batch_size=64, seed=0)
    base.update(kw)
    return SearchConfig(**base)


def _failing(numbers: set[int]):
    """``train_trial``, except that the trials ``numbers`` cannot load their data set (it raises
    inside the trial, which records the failure). A closure: Ray pickles it by value into its
    workers, so nothing but the argument of ``run_search`` tells them which trials fail."""

    def trainable(config: dict) -> None:
        if config["number"] in numbers:
            config = dict(config, dataset="injected-failure")
        train_trial(config)

    return trainable


def test_search_end_to_end(ray_session, tmp_path):
    lines: list[str] = []
    result = run_search(_config(tmp_path / "run"), printer=lines.append, trainable=_failing({1, 4, 5}))
    run = tmp_path / "run"
    frame = pd.read_parquet(run / "trials.parquet")
    assert len(frame) == 8 and set(frame["status"]) <= {"complete", "infeasible", "failed", "stopped", "invalid",
                                                        "duplicate"}
    assert any(c.startswith("param_") for c in frame.columns)
    trained = frame[frame["status"].isin(["complete", "failed", "stopped"])]
    infeasible = frame[frame["status"] == "infeasible"]
    assert len(infeasible) >= 1 and len(trained) >= 2
    # every trained candidate is within budget; no over-budget candidate was ever trained
    assert (trained["peak_ram_bytes"] <= BUDGET).all()
    assert (infeasible["peak_ram_bytes"] > BUDGET).all()
    for number in infeasible["trial"]:
        assert not (run / "trials" / f"{number:04d}" / "metrics.json").exists()
    # a repeat of an earlier trial's network is never trained: it points at the trial that was
    for dup in frame[frame["status"] == "duplicate"].to_dict("records"):
        assert not (run / "trials" / f"{dup['trial']:04d}" / "metrics.json").exists()
        assert dup["duplicate_of"] in set(trained["trial"]) and dup["spec_key"] == \
            frame.set_index("trial").loc[dup["duplicate_of"], "spec_key"]
    # injected failures are recorded and do not stop the search
    failed = frame[frame["status"] == "failed"]
    assert len(failed) >= 1 and set(failed["trial"]) == set(trained["trial"]) & {1, 4, 5}
    assert all(r.startswith("UserError: unknown data set 'injected-failure'") for r in failed["reason"])
    assert (frame["status"] == "complete").sum() >= 1
    # the finalists are exactly the front of the complete, feasible trials
    complete = frame[(frame["status"] == "complete") & frame["feasible"]].to_dict("records")
    front = {r["trial"] for r in pareto_front(complete, ["accuracy", "peak_ram_bytes"])}
    doc = json.loads((run / "pareto.json").read_text())
    assert {f["trial"] for f in doc["finalists"]} == front
    for f in doc["finalists"]:
        assert Path(f["spec_path"]).exists() and Path(f["checkpoint_path"]).exists()
    # the Optuna study is readable by optuna-dashboard and knows the constraints
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run / 'study.db'}")
    assert len(study.trials) == 8
    for t in study.trials:  # the sampler sees each candidate's budget excess
        if t.number in set(infeasible["trial"]):
            assert t.constraints["ram"] > 0
        elif t.number in set(trained["trial"]):
            assert t.constraints["ram"] <= 0
    assert result.counts["infeasible"] == len(infeasible)
    assert any("finalists" in line for line in lines) and any(line.startswith("[  8/8]") for line in lines)


def test_early_stopping_keeps_trials_that_finished(ray_session, tmp_path):
    """With ASHA (3 epochs or more), a trial that trained every epoch is complete even though the
    scheduler stops it inside its last report (ASHA stops every trial reaching max_t there), and
    a trial cut earlier is stopped with the epochs it trained. Trials run in reused actors."""
    result = run_search(_config(tmp_path / "run", epochs=3, trials=6, limit=128), printer=lambda line: None)
    frame = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    trained = frame[frame["status"].isin(["complete", "stopped"])]
    assert (trained[trained["epochs_trained"] == 3]["status"] == "complete").all()
    assert (trained[trained["epochs_trained"] < 3]["status"] == "stopped").all()
    assert (frame["status"] == "complete").sum() >= 1 and result.finalists
    pids = {json.loads((tmp_path / "run" / "trials" / f"{n:04d}" / "metrics.json").read_text())["pid"]
            for n in trained["trial"]}
    assert len(pids) <= 2 < len(trained)  # two workers' actors, reused across trials


def test_a_stopped_trial_is_pruned_and_never_a_finalist(tmp_path):
    """What the searcher does when the scheduler stopped a trial: recorded as stopped with its
    epochs, told to Optuna as pruned, kept out of the Pareto front."""
    cfg = _config(tmp_path / "run", epochs=3, budget=Budget(ram_bytes=parse_bytes("1MB")))
    space = SearchSpace.load(SPACE)
    store = RunStore.create(cfg.out, {"space": {}, "budget": cfg.budget.to_dict()})
    study = optuna.create_study(directions=["maximize", "minimize"], storage=store.storage_url, study_name="search")
    searcher = TuneSearcher(make_ask_tell(space, cfg.budget, store, cfg, lambda line: None).attach(study), 1)
    config = searcher.suggest("t0")
    (Path(config["dir"]) / "metrics.json").write_text(json.dumps({"status": "complete", "epochs_trained": 1,
                                                                   "accuracy": 0.99, "wall_time_s": 1.0}))
    searcher.on_trial_complete("t0", {"accuracy": 0.99, "epoch": 1})
    row = store.rows[config["number"]]
    assert row["status"] == "stopped" and row["epochs_trained"] == 1
    assert study.trials[config["number"]].state == optuna.trial.TrialState.PRUNED
    assert store.write_pareto(["accuracy", "peak_ram"]) == []


def _search_cmd(out, *extra):
    return [sys.executable, "-m", "rnnpool_nas", "search", "--space", SPACE, "--ram-budget", "2KB", "--trials", "10",
            "--epochs", "2", "--limit", "256", "--workers", "2", "--out", str(out), *extra]


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_search_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    done_before = pd.DataFrame()
    while time.time() < deadline:
        time.sleep(2)
        if (out / "trials.parquet").exists():
            frame = pd.read_parquet(out / "trials.parquet")
            if (frame["status"] == "complete").sum() >= 2:
                done_before = frame[frame["status"].isin(["complete", "infeasible"])]
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(done_before) >= 2, "no trial completed before the deadline"
    resumed = subprocess.run(_search_cmd(out, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    frame = pd.read_parquet(out / "trials.parquet").set_index("trial")
    assert len(frame) >= 10 and frame["status"].isin(["complete", "infeasible", "failed", "stopped", "duplicate"]).all()
    for _, row in done_before.iterrows():  # nothing completed was lost or retrained
        after = frame.loc[row["trial"]]
        assert after["status"] == row["status"]
        if row["status"] == "complete":
            assert after["accuracy"] == row["accuracy"] and after["wall_time_s"] == row["wall_time_s"]


@pytest.mark.slow
def test_ctrl_c_ends_the_search_with_130_and_resume_runs_the_rest(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) mid-search: Ray Tune ends the
    experiment cleanly; the search says how many candidates did not run and exits 130, so `make
    run` does not go on to finalize half a search; `--resume` then finishes it with exit 0."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_search_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        if (out / "trials.parquet").exists() and (pd.read_parquet(out / "trials.parquet")["status"] == "complete").any():
            break
    assert proc.poll() is None, "the search ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, (stdout[-1500:], stderr[-1500:])
    assert "candidate(s) still to run" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert "interrupted:" in stdout
    resumed = subprocess.run(_search_cmd(out, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    frame = pd.read_parquet(out / "trials.parquet")
    assert len(frame) == 10 and frame["status"].isin(["complete", "infeasible", "failed", "stopped", "duplicate"]).all()


@pytest.mark.slow
def test_scale_out_to_a_separate_ray_head(tmp_path):
    port = 6390 + os.getpid() % 200
    head = subprocess.Popen(["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false",
                             "--block"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    try:
        # an explicit HOST:PORT, as a user gives it (the probe is plain Ray, so it says what
        # rnnpool-nas turns on by itself: the token that `ray start --head` saved)
        address = f"127.0.0.1:{port}"
        probe = ("import os; os.environ['RAY_AUTH_MODE'] = 'token'; import ray; "
                 "ray.init(address='%s', log_to_driver=False); print(ray.get_runtime_context().get_node_id())")
        node = None
        time.sleep(5)  # a driver that connects before the head is up can hang: give it time, then retry
        for _ in range(10):
            try:
                p = subprocess.run([sys.executable, "-c", probe % address], capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                continue
            if p.returncode == 0:
                node = p.stdout.strip().splitlines()[-1]
                break
            time.sleep(2)
        assert node, "the Ray head did not come up"
        out = tmp_path / "run"
        cmd = _search_cmd(out, "--address", address)
        cmd[cmd.index("--trials") + 1] = "4"
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        frame = pd.read_parquet(out / "trials.parquet")
        trained = frame[frame["status"] == "complete"]
        assert len(trained) >= 1 and set(trained["ray_node_id"]) == {node}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--space", "no-such-space", "--ram-budget", "2KB"], "no-such-space"),
        (["--space", SPACE, "--ram-budget", "2XB"], "2XB"),
        (["--space", SPACE], "give a budget"),
        (["--space", SPACE, "--ram-budget", "100"], "smallest reachable is peak RAM"),
        (["--space", SPACE, "--ram-budget", "2KB", "--dataset", "nope"], "unknown data set"),
        (["--space", SPACE, "--ram-budget", "2KB", "--resume"], "--resume needs --out"),
        (["--space", SPACE, "--ram-budget", "2KB", "--objectives", "accuracy,beauty"], "unknown objective"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys, tmp_path):
    code = main(["search", "--out", str(tmp_path / "r"), *argv] if "--resume" not in argv else ["search", *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()  # nothing created for a search that cannot start


def test_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: [\n")
    assert main(["search", "--space", str(bad), "--ram-budget", "2KB", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.yaml" in err


def test_existing_out_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["search", "--space", SPACE, "--ram-budget", "2KB", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("damage", ["missing", "config", "table"])
def test_corrupt_run_directory_on_resume(tmp_path, capsys, damage):
    out = tmp_path / "r"
    store = RunStore.create(out, {"space": {}, "budget": {}})
    store.record({"trial": 0, "status": "infeasible"})
    if damage == "missing":
        (out / "config.json").unlink()
    elif damage == "config":
        (out / "config.json").write_text("{not json")
    else:
        (out / "trials.parquet").write_bytes(b"PAR1 garbage")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["search", "--space", SPACE, "--ram-budget", "2KB", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(out) in err
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}  # nothing lost


def test_cost_only_scores_without_training(tmp_path, capsys):
    """--cost-only: every candidate is scored by the cost model and recorded; nothing trains, no
    Ray starts; within-budget candidates are 'scored', the others 'infeasible'."""
    out = tmp_path / "co"
    assert main(["search", "--space", "face-detection", "--ram-budget", "64KB", "--trials", "10", "--cost-only",
                 "--out", str(out)]) == 0
    frame = pd.read_parquet(out / "trials.parquet")
    assert len(frame) == 10 and set(frame["status"]) <= {"scored", "infeasible", "invalid", "duplicate"}
    scored_keys = frame[frame["status"] == "scored"]["spec_key"]
    assert scored_keys.is_unique  # a network is scored once; its repeats are duplicates
    scored = frame[frame["status"] == "scored"]
    assert (scored["peak_ram_bytes"] <= 64 * 1024).all() and len(scored) >= 1
    assert (frame[frame["status"] == "infeasible"]["peak_ram_bytes"] > 64 * 1024).all()
    for number in frame["trial"]:
        assert not (out / "trials" / f"{number:04d}" / "checkpoint.pt").exists()
    assert json.loads((out / "pareto.json").read_text())["finalists"] == []
    assert "cheapest candidates within budget" in capsys.readouterr().out


def test_a_detection_space_needs_a_detection_data_set(tmp_path, capsys):
    assert main(["search", "--space", "face-detection", "--ram-budget", "256KB", "--dataset", "lines",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "detection space" in err and not (tmp_path / "x").exists()


def test_a_face_detection_space_trains_with_ap(ray_session, tmp_path):
    """A detection space trains its candidates with the detection trainer on faces-synth; the
    accuracy objective is the validation AP at IoU 0.5."""
    cfg = _config(tmp_path / "faces", space=str(TESTS / "data" / "tiny_face_space.yaml"), trials=2, limit=16,
                  dataset=None, budget=Budget(ram_bytes=parse_bytes("64KB")), batch_size=8)
    result = run_search(cfg, printer=lambda line: None)
    frame = pd.read_parquet(tmp_path / "faces" / "trials.parquet")
    assert result.counts["complete"] == 2, frame[["status", "reason"]]
    assert frame["accuracy"].between(0, 1).all()
    metrics = json.loads((tmp_path / "faces" / "trials" / "0000" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and (tmp_path / "faces" / "trials" / "0000" / "checkpoint.pt").exists()
