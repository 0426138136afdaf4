"""Issue 16: nothing a user does loses a result, runs foreign code or hangs.

Every case runs ``python -m rnnpool_nas`` as a user would (a subprocess with a time-out) and
checks the exit code, that stderr is one line without a traceback, and that every file under the
folders the command was given is byte-identical before and after (hashed). Malicious checkpoints
carry a pickle whose unpickling would create a marker file: it must never appear.

The cases that need neither torch nor a data set (cost, search arguments, resume flags, the
lock) are in the default run; those that start torch in the subprocess (train, export, a resumed
search with checkpoints) take seconds each and are ``slow``; tests/test_run_safety.py checks the
same refusals in-process, fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rnnpool_nas
from rnnpool_nas.run.lock import LOCK

ROOT = Path(rnnpool_nas.__file__).resolve().parents[1]
SPACE_FD = "face-detection"  # its cost-only runs are quick


# ------------------------------------------------------------------------------ helpers


def tree_hash(*folders: Path) -> dict[str, str]:
    """Every file (and folder) under ``folders``: its path -> sha256 of its bytes ('dir' for
    folders); the run lock's file is left out (a writer that is refused may still have opened it)."""
    out: dict[str, str] = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            out[str(folder)] = hashlib.sha256(folder.read_bytes()).hexdigest()
            continue
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.name == LOCK:  # the lock's own file (holder pid and time), not a result
                continue
            out[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def cli(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "rnnpool_nas", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env=os.environ | {"PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"} | (env or {}))


def one_line(proc, *needles: str, code: int = 2) -> str:
    """Exit ``code``, stderr one line, no traceback, every needle in it."""
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, err[-1500:])
    assert "Traceback" not in proc.stderr, err[-1500:]
    assert len(err.splitlines()) == 1, err[-1500:]
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def unchanged(watch, before) -> None:
    after = tree_hash(*watch)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def evil_pickle(path: Path, marker: Path, wrap: bool = True) -> None:
    """A checkpoint whose unpickling runs ``touch marker`` (what a hostile checkpoint.pt does)."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload(), "epoch": 1} if wrap else Payload(), path)


def tiny_spec() -> dict:
    from rnnpool_nas.arch.presets import get_preset

    return get_preset("rnnpool-tiny", classes=9).to_dict()  # the lines data set has 9 classes


def plain_checkpoint(path: Path, spec: dict) -> None:
    """A checkpoint in the training loop's format (what `train` writes), with random weights."""
    import torch

    from rnnpool_nas.arch.build import build
    from rnnpool_nas.arch.spec import ArchSpec

    model = build(ArchSpec.from_dict(spec))
    torch.save({"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 1, "step": 1,
                "generator": torch.Generator().get_state(), "torch_rng": torch.get_rng_state(), "history": [],
                "spec": spec, "config": {}}, path)


@pytest.fixture(scope="module")
def cost_run(tmp_path_factory) -> Path:
    """A finished cost-only search (6 candidates, random sampler): a real run directory."""
    out = tmp_path_factory.mktemp("bad-input") / "run"
    proc = cli("search", "--space", SPACE_FD, "--ram-budget", "64KB", "--trials", "6", "--cost-only",
               "--sampler", "random", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


@pytest.fixture()
def trained(tmp_path) -> Path:
    """What `rnnpool-nas train --out DIR` leaves: arch.json, checkpoint.pt, metrics.json (complete)."""
    out = tmp_path / "trained"
    out.mkdir()
    spec = tiny_spec()
    (out / "arch.json").write_text(json.dumps(spec))
    plain_checkpoint(out / "checkpoint.pt", spec)
    (out / "metrics.json").write_text(json.dumps({"result": {"status": "complete", "val_accuracy": 0.5},
                                                  "dataset": "lines", "spec": "arch.json"}))
    return out


# ----------------------------------------------------------------------- cost (torch-free)


@pytest.mark.parametrize("args,needle", [
    (["--set", "input=[0,0,0]"], "input"),
    (["--width", "inf"], "width"),
    (["--width", "1e9"], "width"),
    (["--input", "99999999x99999999x3"], "too large"),
    (["--set", "input=[99999999,99999999,3]"], "too large"),
    (["--input", ""], "--input"),
    (["--clock-mhz", "inf"], "--clock-mhz"),
])
def test_cost_refuses(args, needle, tmp_path):
    proc = cli("cost", "--preset", "rnnpool-tiny", *args, timeout=30)  # 99999999x99999999 never returned
    one_line(proc, needle)


@pytest.mark.parametrize("content,needle", [
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"input":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    (bytes(range(256)) * 16, "not UTF-8"),
])
def test_hostile_spec_files(content, needle, tmp_path):
    spec = tmp_path / "arch.json"
    spec.write_bytes(content)
    one_line(cli("cost", "--arch", spec, timeout=30), needle)


# --------------------------------------------------------------------------------- search


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "--seed"),
    (["--limit", "0"], "--limit"),
    (["--trials", "0"], "--trials"),
])
def test_search_arguments(args, needle, tmp_path):
    out = tmp_path / "r"
    one_line(cli("search", "--space", SPACE_FD, "--ram-budget", "64KB", "--out", out, *args), needle)
    assert not out.exists()


def test_search_out_below_a_file(tmp_path):
    (tmp_path / "afile").write_text("keep")
    before = tree_hash(tmp_path)
    one_line(cli("search", "--space", SPACE_FD, "--ram-budget", "64KB", "--cost-only", "--out",
                 tmp_path / "afile" / "run"), "is a file")
    unchanged([tmp_path], before)


@pytest.mark.slow
def test_address_without_a_cluster_is_one_line_within_seconds(tmp_path):
    """ray.init retried an unreachable --address for minutes; now: a few seconds, one line,
    and no run folder."""
    out = tmp_path / "r"
    start = time.perf_counter()
    proc = cli("search", "--space", "fashion-mnist", "--ram-budget", "2KB", "--dataset", "lines",
               "--address", "127.0.0.1:1", "--trials", "2", "--out", out, timeout=60)
    one_line(proc, "cannot reach the Ray cluster", "127.0.0.1:1")
    assert time.perf_counter() - start < 30 and not out.exists()


@pytest.mark.slow
def test_labels_beyond_the_space_classes(tmp_path):
    """A data set with more classes than the space's models have outputs: one line before any trial."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "eleven"
    for split in ("train", "val"):
        for k in range(11):  # the fashion-mnist space has 10 classes
            (data / split / f"c{k:02d}").mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), 10 * k, np.uint8)).save(data / split / f"c{k:02d}" / "0.png")
    out = tmp_path / "r"
    one_line(cli("search", "--space", "fashion-mnist", "--ram-budget", "2KB", "--dataset", f"imagefolder:{data}",
                 "--out", out), "11 classes", "10 outputs")
    assert not out.exists()


@pytest.mark.slow
def test_relative_data_paths_are_made_absolute(tmp_path):
    """A relative imagefolder:/--data-dir reaches the Ray workers (another cwd) as an absolute path."""
    out = tmp_path / "r"
    proc = cli("search", "--space", SPACE_FD, "--ram-budget", "64KB", "--trials", "2", "--cost-only",
               "--dataset", "wider-face:data/wider", "--out", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == f"wider-face:{tmp_path / 'data' / 'wider'}"


@pytest.mark.slow
def test_corrupt_study_db_on_resume(cost_run, tmp_path):
    run = copy_run(cost_run, tmp_path / "run")
    (run / "study.db").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    before = tree_hash(run)
    one_line(cli("search", "--out", run, "--resume"), "study.db")
    unchanged([run], {k: v for k, v in before.items()})


# --------------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_restores_the_run_from_config_json(cost_run, tmp_path):
    """The README's `search --out DIR --resume` (no budget, no space): everything comes back
    from config.json; a larger --trials extends the run and says so; the resumed sampler does not
    propose the run's first candidates again."""
    run = copy_run(cost_run, tmp_path / "run")
    again = cli("search", "--out", run, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "all 6 trials are done" in again.stdout
    more = cli("search", "--out", run, "--resume", "--trials", "12")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "extending" in more.stdout and "from 6 to 12 trials" in more.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["trials"] == 12 and config["budget"]["ram_bytes"] == 64 * 1024
    import pandas as pd

    frame = pd.read_parquet(run / "trials.parquet").sort_values("trial")
    params = [c for c in frame.columns if c.startswith("param_")]
    rows = [tuple(map(str, r)) for r in frame[params].itertuples(index=False)]
    assert len(rows) == 12
    # before: the resumed random sampler restarted from seed 0 and proposed trial 0, 1, ... again
    assert rows[6:] != rows[:6] and not set(rows[6:]) & set(rows[:6])


@pytest.mark.parametrize("args,needle", [
    (["--ram-budget", "32KB"], "contradicts"),
    (["--space", "fashion-mnist"], "contradicts"),
    (["--seed", "3"], "contradicts"),
    (["--sampler", "tpe"], "contradicts"),
    (["--epochs", "9"], "contradicts"),
    (["--trials", "3"], "fewer than the run's 6"),
])
def test_resume_with_contradicting_flags(cost_run, args, needle):
    before = tree_hash(cost_run)
    one_line(cli("search", "--out", cost_run, "--resume", *args), needle)
    unchanged([cost_run], before)


def test_a_second_writer_is_refused(cost_run):
    """A run whose lock another process holds (a live search): one line, nothing written."""
    from rnnpool_nas.run.lock import lock_run

    before = tree_hash(cost_run)
    with lock_run(cost_run, "search"):
        one_line(cli("search", "--out", cost_run, "--resume", "--trials", "8"), "in use by another",
                 f"pid {os.getpid()}")
    unchanged([cost_run], before)


def test_read_only_commands_create_nothing(cost_run):
    before = tree_hash(cost_run)
    proc = cli("pareto", cost_run)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    unchanged([cost_run], before)


@pytest.mark.slow
def test_malicious_checkpoint_on_search_resume(cost_run, tmp_path):
    """An interrupted trial's checkpoint.pt that would run code: refused with one line, never unpickled."""
    import optuna

    from rnnpool_nas.run.store import RunStore, new_row

    run = copy_run(cost_run, tmp_path / "run")
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run / 'study.db'}")
    trial = study.ask()  # left RUNNING, as by a killed driver
    store = RunStore.open(run)
    store.trial_dir(trial.number)
    store.record(new_row(trial.number, {}) | {"status": "running"})
    marker = tmp_path / "PWNED"
    evil_pickle(run / "trials" / f"{trial.number:04d}" / "checkpoint.pt", marker)
    before = tree_hash(run)
    one_line(cli("search", "--out", run, "--resume", "--trials", "9"), "refused unread")
    assert not marker.exists()
    unchanged([run], before)


# ---------------------------------------------------------------------- train and export


@pytest.mark.slow
@pytest.mark.parametrize("wrap", [True, False])
def test_malicious_checkpoint_on_export(trained, tmp_path, wrap):
    marker = tmp_path / "PWNED"
    evil_pickle(trained / "checkpoint.pt", marker, wrap)
    before = tree_hash(trained)
    one_line(cli("export", "--checkpoint", trained / "checkpoint.pt", "--arch", trained / "arch.json",
                 "--dataset", "lines", "--out", tmp_path / "exp", "--no-build"), "refused unread")
    assert not marker.exists() and not (tmp_path / "exp").exists()
    unchanged([trained], before)


@pytest.mark.slow
def test_malicious_checkpoint_on_export_from_a_run(tmp_path):
    from rnnpool_nas.run.budget import Budget
    from rnnpool_nas.run.store import RunStore, new_row

    run = tmp_path / "run"
    store = RunStore.create(run, {"space": {"name": "t"}, "budget": Budget(ram_bytes=1 << 20).to_dict(),
                                  "dataset": "lines", "data_dir": None, "limit": 64, "seed": 0})
    trial = store.trial_dir(0)
    (trial / "arch.json").write_text(json.dumps(tiny_spec()))
    marker = tmp_path / "PWNED"
    evil_pickle(trial / "checkpoint.pt", marker)
    store.record(new_row(0, {}) | {"status": "complete", "feasible": True, "accuracy": 0.5})
    before = tree_hash(run)
    one_line(cli("export", run, "--trial", "0", "--force", "--out", tmp_path / "exp", "--no-build"), "refused unread")
    assert not marker.exists()
    unchanged([run], before)


@pytest.mark.slow
def test_malicious_checkpoint_on_train_resume(trained, tmp_path):
    marker = tmp_path / "PWNED"
    evil_pickle(trained / "checkpoint.pt", marker)
    before = tree_hash(trained)
    one_line(cli("train", "--preset", "rnnpool-tiny", "--dataset", "lines", "--limit", "32", "--epochs", "2",
                 "--out", trained, "--resume", "--no-int8"), "refused unread")
    assert not marker.exists()
    unchanged([trained], before)


@pytest.mark.slow
def test_train_resume_checks_before_it_writes(trained):
    """A truncated checkpoint or another architecture: one line, arch.json and metrics.json kept."""
    data = (trained / "checkpoint.pt").read_bytes()
    (trained / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    before = tree_hash(trained)
    common = ["--dataset", "lines", "--limit", "32", "--epochs", "2", "--out", trained, "--resume", "--no-int8"]
    one_line(cli("train", "--preset", "rnnpool-tiny", *common), "corrupt or truncated")
    unchanged([trained], before)
    (trained / "checkpoint.pt").write_bytes(data)
    before = tree_hash(trained)
    one_line(cli("train", "--preset", "rnnpool-tiny", "--set", "h1=4", *common), "another architecture")
    unchanged([trained], before)


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--seed", "-1"], "--seed"),
    (["--limit", "0"], "--limit"),
    (["--warmup", "nan"], "--warmup"),
])
def test_train_arguments(args, needle, tmp_path):
    out = tmp_path / "t"
    one_line(cli("train", "--preset", "rnnpool-tiny", "--dataset", "lines", "--out", out, *args), needle)
    assert not out.exists()


@pytest.mark.slow
def test_train_out_below_a_file(tmp_path):
    (tmp_path / "afile").write_text("keep")
    before = tree_hash(tmp_path)
    one_line(cli("train", "--preset", "rnnpool-tiny", "--dataset", "lines", "--limit", "16",
                 "--out", tmp_path / "afile" / "t"), "--out")
    unchanged([tmp_path], before)


@pytest.mark.slow
def test_export_out_below_a_file(trained, tmp_path):
    (tmp_path / "afile").write_text("keep")
    before = tree_hash(tmp_path)
    one_line(cli("export", "--checkpoint", trained / "checkpoint.pt", "--arch", trained / "arch.json",
                 "--dataset", "lines", "--out", tmp_path / "afile" / "x", "--no-build"), "is a file")
    unchanged([tmp_path], before)


@pytest.mark.slow
def test_a_spec_too_large_for_memory(tmp_path):
    """10^9 channels: refused from the parameter count before anything is allocated (it died of OOM)."""
    spec = tiny_spec()
    spec["stages"][4]["c"] = 10**9
    arch = tmp_path / "huge.json"
    arch.write_text(json.dumps(spec))
    out = tmp_path / "t"
    one_line(cli("train", "--arch", arch, "--dataset", "lines", "--limit", "16", "--out", out),
             "parameters", "memory available")
    assert not out.exists()


def test_measure_clock(tmp_path):
    one_line(cli("measure", tmp_path, "--clock-mhz", "inf"), "--clock-mhz")


# ------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_two_concurrent_writers_on_one_run(tmp_path):
    """Two searches writing one run (two `make run`s): the second is refused with one line while
    the first runs, and the first's rows are all there at the end."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "rnnpool_nas", "search", "--space", SPACE_FD, "--ram-budget",
                              "64KB", "--trials", "300", "--cost-only", "--sampler", "random", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=os.environ | {"PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "trials.parquet").exists():
            time.sleep(0.2)
        assert (out / "trials.parquet").exists() and first.poll() is None, "the first search did not get going"
        second = cli("search", "--out", out, "--resume", "--trials", "400")
        assert first.poll() is None, "the first search ended before the second writer tried"
        one_line(second, "in use by another rnnpool-nas process", "search")
        assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    import pandas as pd

    frame = pd.read_parquet(out / "trials.parquet")
    assert sorted(frame["trial"]) == list(range(300))
    assert json.loads((out / "config.json").read_text())["trials"] == 300


@pytest.mark.slow
def test_a_model_run_that_never_returns(tmp_path, monkeypatch):
    """measure on an export whose model_run loops forever: one line once its budget is spent."""
    import shutil

    from rnnpool_nas.arch.presets import get_preset
    from rnnpool_nas.errors import UserError
    from rnnpool_nas.measure import emulate as emu
    from rnnpool_nas.measure import measure
    from rnnpool_nas.measure.untrained import export_untrained

    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    out = tmp_path / "exp"
    export_untrained(get_preset("rnnpool-tiny"), out)
    model_c = (out / "model.c").read_text()
    head = model_c.index("model_run(")
    body = model_c.index("{", head) + 1
    (out / "model.c").write_text(model_c[:body] + "\n    for (;;) { __asm__ volatile(\"\"); }\n" + model_c[body:])
    import rnnpool_nas.measure as measure_module

    monkeypatch.setattr(emu, "FREE_RUN_S", 0.5)
    monkeypatch.setattr(measure_module, "instruction_budget", lambda doc: 10**6)
    with pytest.raises(UserError, match="model_run does not return") as info:
        measure(out, log=lambda *_: None, write=False)
    assert "\n" not in str(info.value)
