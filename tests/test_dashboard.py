"""optuna-dashboard (the `dashboard` extra, which `make` installs) serves a run's study.db with
every trial, its values and its costs as user attributes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from rnnpool_nas.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_optuna_dashboard_serves_the_study_with_costs(tmp_path):
    pytest.importorskip("optuna_dashboard")
    run = tmp_path / "run"
    assert main(["search", "--space", "fashion-mnist", "--ram-budget", "16KB", "--cost-only", "--trials", "12",
                 "--out", str(run)]) == 0
    table = pd.read_parquet(run / "trials.parquet").set_index("trial")
    port = _free_port()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    server = subprocess.Popen([str(dashboard), f"sqlite:///{run / 'study.db'}", "--port", str(port), "--host",
                               "127.0.0.1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        studies = None
        for _ in range(60):
            try:
                studies = _get(f"{base}/api/studies")
                break
            except OSError:
                time.sleep(0.5)
        assert studies is not None, server.stderr.read1().decode()[-500:] if server.poll() is not None else "no answer"
        (study,) = [s for s in studies["study_summaries"] if s["study_name"] == "search"]
        detail = _get(f"{base}/api/studies/{study['study_id']}?after=0")
        trials = {t["number"]: t for t in detail["trials"]}
        assert set(trials) == set(table.index)
        for number, trial in trials.items():
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert float(attrs["peak_ram_bytes"]) == table.loc[number, "peak_ram_bytes"]
            assert float(attrs["madds"]) == table.loc[number, "madds"]
            if table.loc[number, "status"] in ("scored", "infeasible"):
                assert trial["values"][1] == pytest.approx(table.loc[number, "peak_ram_bytes"])
    finally:
        server.terminate()
        server.wait(timeout=10)
