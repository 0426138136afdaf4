"""Issue 16, in-process and fast: weights-only checkpoints, the run lock, reconciling a run from
its trials' metrics.json, the duplicate lookup a searcher calls, the Ray address time-out and
the browse server's Host check, 414 and log escaping. (tests/test_bad_input_cli.py runs the
same cases as a user would, in subprocesses.)"""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch

from rnnpool_nas.arch.presets import get_preset
from rnnpool_nas.data import load_dataset
from rnnpool_nas.errors import UserError
from rnnpool_nas.run.lock import lock_run
from rnnpool_nas.cluster import check_address
from rnnpool_nas.search.runner import _requeue_interrupted
from rnnpool_nas.run.store import RunStore, new_row
from rnnpool_nas.train.checkpoint import load_checkpoint
from rnnpool_nas.train.trainer import TrainConfig, Trainer

from .conftest import one_line_error


class Payload:
    """Unpickling it runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": Payload(marker)}, path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    one_line_error(info, "refused unread", "posix.system")
    assert not marker.exists()


def test_damaged_and_foreign_checkpoints(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.ones(3)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    one_line_error(info, "corrupt or truncated")
    torch.save([1, 2, 3], path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    one_line_error(info, "not a checkpoint")
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "missing.pt")
    one_line_error(info, "missing")


def test_the_trainers_own_checkpoint_loads_weights_only_and_resumes(tmp_path):
    """The format the training loop writes needs no migration: weights-only loading takes it, and
    a resume from it ends where an uninterrupted run does; a hostile one fails the run, unrun."""
    spec = get_preset("rnnpool-tiny", classes=9)
    data = load_dataset("lines", limit=64)
    ckpt = tmp_path / "a" / "checkpoint.pt"
    config = TrainConfig(epochs=2, batch_size=32, threads=1)
    first = Trainer(spec, data, config, checkpoint=ckpt).fit(callback=lambda m: False)  # stop after epoch 1
    assert first.status == "stopped" and first.epochs_trained == 1
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1 and "optimizer" in state and state["spec"] == spec.to_dict()
    resumed = Trainer(spec, data, config, checkpoint=ckpt, resume=True).fit()
    straight = Trainer(spec, data, config).fit()
    assert resumed.status == "complete" and resumed.epochs_trained == 2
    assert math.isclose(resumed.history[-1].train_loss, straight.history[-1].train_loss, rel_tol=1e-5)
    marker = tmp_path / "PWNED"
    torch.save({"model": Payload(marker), "optimizer": {}, "scheduler": {}, "epoch": 1, "step": 1, "generator": 0,
                "torch_rng": 0, "history": []}, ckpt)
    bad = Trainer(spec, data, TrainConfig(epochs=2, batch_size=32, threads=1), checkpoint=ckpt, resume=True).fit()
    assert bad.status == "failed" and "refused unread" in bad.reason and not marker.exists()


def test_export_refuses_a_pickle_payload(tmp_path):
    from rnnpool_nas.export.exporter import Source, load_model

    marker = tmp_path / "PWNED"
    torch.save({"model": Payload(marker)}, tmp_path / "checkpoint.pt")
    source = Source(get_preset("rnnpool-tiny"), tmp_path / "checkpoint.pt", "lines", None)
    with pytest.raises(UserError) as info:
        load_model(source)
    one_line_error(info, "refused unread")
    assert not marker.exists()


# --------------------------------------------------------------------------- the run lock


def test_one_writer_per_run(tmp_path):
    store = RunStore.create(tmp_path / "run", {"space": {}, "budget": {}}, lock="search")
    with pytest.raises(UserError) as info:
        RunStore.open(tmp_path / "run", lock="search")
    one_line_error(info, "in use by another rnnpool-nas process", f"pid {os.getpid()}", "search")
    with pytest.raises(UserError):
        RunStore.create(tmp_path / "run", {"space": {}, "budget": {}}, lock="search")
    reader = RunStore.open(tmp_path / "run")  # readers (report, pareto, export) take no lock
    assert reader.lock is None
    store.close()
    again = RunStore.open(tmp_path / "run", lock="search")  # released: the next writer gets it
    again.close()
    with lock_run(tmp_path / "run", "train") as held:
        assert held.held
    assert not held.held


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    """The kernel drops an flock with its process, so a SIGKILLed search never blocks a resume."""
    import subprocess
    import sys

    run = tmp_path / "run"
    RunStore.create(run, {"space": {}, "budget": {}}).close()
    code = (f"from rnnpool_nas.run.lock import lock_run; import time; lock_run({str(run)!r}, 'search'); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            RunStore.open(run, lock="search")
    finally:
        proc.kill()
        proc.wait()
    RunStore.open(run, lock="search").close()


# ---------------------------------------------------------------- reconcile and duplicates


def _run_with_study(tmp_path):
    store = RunStore.create(tmp_path / "run", {"space": {}, "budget": {}, "objectives": ["accuracy", "peak_ram"]})
    study = optuna.create_study(storage=store.storage_url, study_name="search", directions=["maximize", "minimize"])
    return store, study


def _running(store, study, params):
    trial = study.ask()
    for k, v in params.items():
        trial.suggest_int(k, v, v)
    row = new_row(trial.number, params) | {"status": "running", "peak_ram_bytes": 1000.0, "feasible": True}
    store.trial_dir(trial.number)
    store.record(row)
    return trial.number


def _metrics(store, number, **fields):
    (store.root / "trials" / f"{number:04d}" / "metrics.json").write_text(json.dumps(fields))


def test_resume_reconciles_finished_trials_from_their_metrics(tmp_path):
    """Killed between a trial's end and the table write: its metrics.json says complete, so the
    resume records it (and tells Optuna) instead of dropping it and training a replacement; a
    trial that was really interrupted is asked again."""
    store, study = _run_with_study(tmp_path)
    done = _running(store, study, {"a": 1})
    _metrics(store, done, status="complete", epochs_trained=2, accuracy=0.75, wall_time_s=3.0, node="n")
    told = _running(store, study, {"a": 2})  # Optuna heard of it, the table did not
    _metrics(store, told, status="complete", epochs_trained=2, accuracy=0.5, wall_time_s=1.0)
    study.tell(told, [0.5, 1000.0])
    broken = _running(store, study, {"a": 3})
    _metrics(store, broken, status="failed", reason="RuntimeError: boom", epochs_trained=0, accuracy=None)
    stopped = _running(store, study, {"a": 5})  # the scheduler stopped it and Optuna heard so
    _metrics(store, stopped, status="running", epochs_trained=1, accuracy=0.4)
    study.tell(stopped, state=optuna.trial.TrialState.PRUNED)
    cut = _running(store, study, {"a": 4})
    _metrics(store, cut, status="running", epochs_trained=1, accuracy=0.3)
    lines: list[str] = []
    _requeue_interrupted(study, store, lines.append, epochs=2)
    assert store.rows[done]["status"] == "complete" and store.rows[done]["accuracy"] == 0.75
    assert store.rows[told]["status"] == "complete" and store.rows[broken]["status"] == "failed"
    assert "boom" in store.rows[broken]["reason"] and cut not in store.rows
    assert store.rows[stopped]["status"] == "stopped" and store.rows[stopped]["epochs_trained"] == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states[done] == optuna.trial.TrialState.COMPLETE and study.trials[done].values == [0.75, 1000.0]
    assert states[broken] == optuna.trial.TrialState.FAIL and states[cut] == optuna.trial.TrialState.FAIL
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs.get("fixed_params") for t in waiting] == [{"a": 4}]  # only the interrupted one runs again
    reread = RunStore.open(store.root)
    assert reread.rows[done]["status"] == "complete"
    assert sum("recorded from its metrics.json" in line for line in lines) == 4


def test_completed_with_params(tmp_path):
    store = RunStore.create(tmp_path / "run", {"space": {}, "budget": {}})
    store.record(new_row(0, {"a": 1, "b": "x", "p": None}) | {"status": "complete", "accuracy": 0.9})
    store.record(new_row(1, {"a": 2, "b": "x", "p": 3}) | {"status": "infeasible"})
    store.record(new_row(2, {"a": 3, "b": "y", "p": 4}) | {"status": "complete", "accuracy": 0.8})
    store.record(new_row(3, {"a": 5, "b": "y", "p": 4, "q": 7}) | {"status": "complete", "accuracy": 0.7})
    store = RunStore.open(store.root)  # as a resumed run sees them: read back from parquet
    assert store.completed_with_params({"a": 1, "b": "x", "p": None})["trial"] == 0
    assert store.completed_with_params({"a": 3, "b": "y", "p": 4})["trial"] == 2
    assert store.completed_with_params({"a": 2, "b": "x", "p": 3}) is None  # never trained
    assert store.completed_with_params({"a": 1, "b": "y", "p": None}) is None
    assert store.completed_with_params({"a": 5, "b": "y", "p": 4, "q": 7})["trial"] == 3  # q: a float column with gaps
    assert store.completed_with_params({"a": 5, "b": "y", "p": 4}) is None


# ----------------------------------------------------------------------- address, browse


def test_an_unreachable_ray_address_is_one_line_within_seconds():
    start = time.perf_counter()
    with pytest.raises(UserError) as info:
        check_address("127.0.0.1:1", timeout_s=2)
    one_line_error(info, "cannot reach the Ray cluster at 127.0.0.1:1")
    assert time.perf_counter() - start < 5
    check_address("auto")  # left to Ray


@pytest.fixture()
def browse(tmp_path):
    from rnnpool_nas.report import make_server

    (tmp_path / "hello.txt").write_text("hi")
    lines: list[str] = []
    srv = make_server(tmp_path, "127.0.0.1", 0, log=lines.append)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, lines
    srv.shutdown()
    srv.server_close()


def _raw(srv, request: bytes) -> tuple[int, bytes]:
    import socket

    with socket.create_connection(("127.0.0.1", srv.server_port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_browse_refuses_foreign_hosts(browse):
    srv, _ = browse
    port = srv.server_port
    assert _raw(srv, f"GET /hello.txt HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n".encode())[0] == 403
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        status, body = _raw(srv, f"GET /hello.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert (status, body) == (200, b"hi"), host
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/hello.txt")  # what a browser on this machine sends
    assert conn.getresponse().status == 200


def test_browse_long_paths_and_control_characters(browse):
    srv, lines = browse
    status, body = _raw(srv, b"GET /" + b"a" * 60000 + b" HTTP/1.0\r\n\r\n")
    assert status == 414 and b"aaaa" not in body
    status, body = _raw(srv, b"GET /" + b"b" * 300 + b" HTTP/1.0\r\n\r\n")  # a name too long for the disk
    assert status == 404 and b"bbbb" not in body
    _raw(srv, b"GET /\x1b[31mred\x07 HTTP/1.0\r\n\r\n")
    time.sleep(0.2)
    assert lines and not any(ch in line for line in lines for ch in "\x1b\x07")
    assert any("\\x1b[31mred\\x07" in line for line in lines)
    assert all(len(line) <= 400 for line in lines)


def test_a_search_whose_trained_trials_all_failed_exits_non_zero(capsys):
    from rnnpool_nas.cli.search import _exit_code
    from rnnpool_nas.search.runner import SearchResult

    def result(**counts):
        return SearchResult(Path("r"), [], {"complete": 0, "stopped": 0, "failed": 0} | counts, 1.0, 0.0,
                            failure_reason="FileNotFoundError: data/vww")

    assert _exit_code(result(failed=4)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "every trained trial failed (4)" in err and "data/vww" in err
    assert _exit_code(result(failed=4, complete=1)) == 0 and _exit_code(result()) == 0
    capsys.readouterr()
    stopped = result(complete=3)
    stopped.unfinished = 7
    assert _exit_code(stopped) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "7 candidate(s) still to run" in err and "--resume" in err
