"""The report page, the finalists table and the pareto command, on run directories made
without a search (tests/report_fixture.py): the numbers in the page's figures are the ones in
trials.parquet, pareto.json and the cost model."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnpool_nas.arch.spec import load_spec
from rnnpool_nas.cli import main
from rnnpool_nas.cost import evaluate
from rnnpool_nas.errors import UserError
from rnnpool_nas.report import ReportRefresher, finalists_table, write_report
from rnnpool_nas.report.page import plotly_js
from rnnpool_nas.run.budget import Budget
from rnnpool_nas.run.pareto import accuracy_ram_hypervolume, pareto_front
from rnnpool_nas.run.store import RunStore

from .conftest import one_line_error
from .report_fixture import BUDGET, figures, make_run, run_config

def values(data) -> list:
    """A trace array as a list (plotly may encode numpy arrays as base64 typed arrays)."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = make_run(tmp_path_factory.mktemp("runs") / "fm-8k", trials=40)
    write_report(root)
    return root


@pytest.fixture(scope="module")
def page(run) -> str:
    return (run / "report.html").read_text()


@pytest.fixture(scope="module")
def table(run) -> pd.DataFrame:
    return pd.read_parquet(run / "trials.parquet")


@pytest.fixture(scope="module")
def pareto_doc(run) -> dict:
    return json.loads((run / "pareto.json").read_text())


def test_the_fixture_has_every_kind_of_trial(table):
    assert {"complete", "stopped", "infeasible", "failed"} <= set(table["status"])


def test_the_page_is_self_contained_and_works_offline(page):
    assert page.count(plotly_js()) == 1  # plotly.js embedded once, inline
    rest = page.replace(plotly_js(), "")
    assert "<script src" not in rest and "<link rel=\"stylesheet\"" not in rest and "cdn." not in rest
    assert page.count('<script type="application/json" data-plot=') == len(figures(page)) >= 8
    assert "js-plotly-plot" not in rest  # only plotly.js running in a browser makes those


def test_scatter_points_are_the_trial_table(page, table):
    figs = figures(page)
    assert {"pareto-peak_ram_bytes", "pareto-madds"} <= set(figs)
    assert "pareto-latency_ms" not in figs  # no latency in this run
    for column, scale in (("peak_ram_bytes", 1 / 1024), ("madds", 1e-6)):
        seen: dict[int, str] = {}
        for trace in figs[f"pareto-{column}"]["data"]:
            status = (trace.get("meta") or {}).get("status")
            if status is None:
                continue
            for trial, x, y in zip(trace["customdata"], values(trace["x"]), values(trace["y"])):
                row = table.loc[table["trial"] == trial].iloc[0]
                assert row["status"] == status
                assert x == pytest.approx(row[column] * scale)
                if status in ("complete", "stopped"):
                    assert y == pytest.approx(row["accuracy"])
                else:
                    assert math.isnan(row["accuracy"])
                seen[trial] = status
        with_costs = table[table[column].notna()]
        assert seen == dict(zip(with_costs["trial"], with_costs["status"]))


def test_front_finalists_and_budget_line(page, table, pareto_doc):
    figs = figures(page)
    complete = table[(table["status"] == "complete") & table["feasible"]].to_dict("records")
    finalists = [f["trial"] for f in pareto_doc["finalists"]]
    assert finalists
    for column, scale, limit in (("peak_ram_bytes", 1 / 1024, BUDGET.ram_bytes / 1024), ("madds", 1e-6, None)):
        fig = figs[f"pareto-{column}"]
        by_role = {(t.get("meta") or {}).get("role"): t for t in fig["data"]}
        front = by_role["front"]
        expected = sorted(pareto_front(complete, ["accuracy", column]), key=lambda r: (r[column], r["accuracy"]))
        assert front["customdata"] == [r["trial"] for r in expected]
        assert values(front["x"]) == pytest.approx([r[column] * scale for r in expected])
        assert front["line"]["shape"] == "hv"  # a step line
        labelled = by_role["finalists"]
        assert labelled["customdata"] == finalists
        assert labelled["text"] == [f"t{t}" for t in finalists]
        lines = [s for s in fig["layout"].get("shapes", []) if s["type"] == "line"]
        if limit is None:
            assert not lines
        else:
            assert lines and all(s["x0"] == s["x1"] == pytest.approx(limit) for s in lines)


def test_hover_shows_hyperparameters_and_costs(page, table):
    trace = next(t for t in figures(page)["pareto-peak_ram_bytes"]["data"]
                 if (t.get("meta") or {}).get("status") == "complete")
    trial, text = trace["customdata"][0], trace["hovertext"][0]
    row = table.loc[table["trial"] == trial].iloc[0]
    assert f"trial {trial}" in text and f"accuracy {row['accuracy']:.4f}" in text
    assert f"peak RAM {row['peak_ram_bytes'] / 1024:,.2f} KiB" in text and f"{row['params']:,.0f} params" in text
    for column in [c for c in table.columns if c.startswith("param_")]:
        value = row[column]
        if value is not None and value == value:
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            assert f"{column[6:]} = {shown}" in text


def test_parallel_coordinates_are_the_hyperparameters(page, table):
    fig = figures(page)["parallel"]
    trace = fig["data"][0]
    assert trace["type"] == "parcoords"
    trained = table[table["accuracy"].notna()].sort_values("trial")
    assert trace["meta"]["trials"] == trained["trial"].tolist()
    assert values(trace["line"]["color"]) == pytest.approx(trained["accuracy"].tolist())
    dims = {d["label"]: d for d in trace["dimensions"]}
    assert values(dims["accuracy"]["values"]) == pytest.approx(trained["accuracy"].tolist())
    assert values(dims["peak RAM (KiB)"]["values"]) == pytest.approx((trained["peak_ram_bytes"] / 1024).tolist())
    checked = 0
    for column in [c for c in table.columns if c.startswith("param_")]:
        if column[6:] not in dims:
            assert trained[column].nunique(dropna=False) < 2  # only constant columns are left out
            continue
        dim = dims[column[6:]]
        shown = [dim["ticktext"][int(i)] for i in values(dim["values"])]
        for got, want in zip(shown, trained[column]):
            if want is None or want != want:
                assert got == "–"
            else:
                want = int(want) if isinstance(want, float) and want.is_integer() else want
                assert got == str(want)
        checked += 1
    assert checked >= 5


def test_progress_is_hypervolume_and_best_accuracy_over_trials(run, page, table):
    fig = figures(page)["progress"]
    by_role = {t["meta"]["role"]: t for t in fig["data"]}
    ordered = table.sort_values("trial")
    good = ordered["accuracy"].where((ordered["status"] == "complete") & ordered["feasible"])
    assert by_role["best_accuracy"]["x"] == ordered["trial"].tolist()
    best = [None if v != v else v for v in good.cummax().ffill().tolist()]  # NaN (JSON null) before the first
    got = values(by_role["best_accuracy"]["y"])
    assert [g is None for g in got] == [b is None for b in best]
    assert [g for g in got if g is not None] == pytest.approx([b for b in best if b is not None])
    hv = values(by_role["hypervolume"]["y"])
    assert hv == sorted(hv)  # never decreases
    assert hv[-1] == pytest.approx(accuracy_ram_hypervolume(table.to_dict("records"), BUDGET.ram_bytes))
    first = ordered["trial"].tolist().index(ordered.loc[good.notna(), "trial"].iloc[0])
    assert hv[first] > 0 and all(v == 0 for v in hv[:first])


def test_finalists_table_and_export_commands(run, page, pareto_doc):
    rows = finalists_table(run)
    assert [r["trial"] for r in rows] == [f["trial"] for f in pareto_doc["finalists"]]
    for row, f in zip(rows, pareto_doc["finalists"]):
        assert row["accuracy"] == f["accuracy"] and row["peak_ram_bytes"] == f["peak_ram_bytes"]
        command = f"rnnpool-nas export {run} --trial {f['trial']} --out export/fm-8k-t{f['trial']}"
        assert row["export_command"] == command
        assert f'<code class="export">{command}</code>' in page


def test_ram_profile_of_each_finalist(run, page, table, pareto_doc):
    figs = figures(page)
    for f in pareto_doc["finalists"]:
        fig = figs[f"ram-profile-t{f['trial']}"]
        bars = fig["data"][0]
        costs = evaluate(load_spec(f["spec_path"]), BUDGET.dtype, BUDGET.convention)
        assert values(bars["y"]) == pytest.approx([s.ram_bytes / 1024 for s in costs.stages])
        peak = table.loc[table["trial"] == f["trial"], "peak_ram_bytes"].iloc[0]
        assert max(values(bars["y"])) == pytest.approx(peak / 1024)  # the profile's peak is the table's
        red = [name for name, color in zip(bars["x"], bars["marker"]["color"]) if color == "#d62728"]
        assert red == [f"{costs.bottleneck} {next(s.kind for s in costs.stages if s.name == costs.bottleneck)}"]
        assert [s["y0"] for s in fig["layout"]["shapes"]] == [pytest.approx(BUDGET.ram_bytes / 1024)]


def test_a_run_without_a_completed_trial_says_so(tmp_path, capsys):
    run = make_run(tmp_path / "none-done", trials=12, complete=False)
    assert not (pd.read_parquet(run / "trials.parquet")["status"] == "complete").any()
    page = write_report(run).read_text()
    assert 'id="no-complete"' in page and "No trial has completed within the budget yet" in page
    assert "pareto-peak_ram_bytes" in figures(page)  # what finished is still plotted
    assert finalists_table(run) == []
    assert main(["pareto", str(run)]) == 0
    assert "no finalists yet" in capsys.readouterr().out


def test_a_run_with_no_trial_yet(tmp_path):
    run = tmp_path / "fresh"
    RunStore.create(run, {"space": {}, "budget": Budget(ram_bytes=8192).to_dict()})
    page = write_report(run).read_text()
    assert "No trial has finished yet" in page
    assert figures(page) == {} and "<script>" not in page  # no plots, so no plotly.js


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(UserError) as excinfo:
        write_report(tmp_path)
    one_line_error(excinfo, "not a run directory")
    for command in (["report", str(tmp_path)], ["pareto", str(tmp_path)], ["pareto", str(tmp_path / "nope")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not a run directory" in err


def test_pareto_command(run, pareto_doc, capsys):
    assert main(["pareto", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["trial", "accuracy", "peak"]
    for line, f in zip(out[2:], pareto_doc["finalists"]):
        assert line.split()[:2] == [str(f["trial"]), f"{f['accuracy']:.4f}"]
        assert line.endswith(f"--trial {f['trial']} --out export/fm-8k-t{f['trial']}")
    assert main(["pareto", str(run), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["trial"] for f in doc["finalists"]] == [f["trial"] for f in pareto_doc["finalists"]]
    assert doc["budget"]["ram_bytes"] == BUDGET.ram_bytes and doc["objectives"] == ["accuracy", "peak_ram"]
    assert all(f["export_command"].startswith("rnnpool-nas export ") for f in doc["finalists"])


def test_report_command(run, capsys):
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").exists()
    assert "report.html (40 trial(s)" in capsys.readouterr().out


def test_refresher_is_throttled_and_never_raises(run, tmp_path):
    lines: list[str] = []
    refresh = ReportRefresher(run, interval_s=3600, printer=lines.append)
    assert refresh() == run / "report.html"
    assert refresh() is None  # too soon
    assert refresh(force=True) == run / "report.html"
    broken = ReportRefresher(tmp_path / "gone", printer=lines.append)
    assert broken(force=True) is None
    assert len(lines) == 1 and lines[0].startswith("report not written (UserError:") and "\n" not in lines[0]


def _due(refresh) -> None:
    """Make the refresher due now: it waits ten times its last write's duration, which on a
    loaded machine can outlast the records this test makes."""
    refresh.next_at = float("-inf")


def test_the_search_record_callback_refreshes_the_report(tmp_path):
    """The search emits every row through ``on_record`` (no Ray needed here); wired to a
    ``ReportRefresher`` as the CLI wires it, the page follows the run. The search itself writes
    no report: ``rnnpool-nas search`` does, at the end."""
    import optuna

    from rnnpool_nas.search.runner import SearchConfig, make_ask_tell, run_search
    from rnnpool_nas.search.space import SearchSpace
    from rnnpool_nas.search.tune_searcher import TuneSearcher

    space = SearchSpace.load("fashion-mnist")
    out = tmp_path / "live"
    store = RunStore.create(out, run_config(space, 4))
    study = optuna.create_study(directions=["maximize", "minimize"], storage=store.storage_url, study_name="search")
    cfg = SearchConfig(space="fashion-mnist", budget=BUDGET, out=str(out), trials=4, epochs=1)
    refresh = ReportRefresher(out, interval_s=0)
    heard: list[dict] = []
    ask_tell = make_ask_tell(space, BUDGET, store, cfg, lambda line: None,
                         on_record=lambda row: (heard.append(row), _due(refresh), refresh())).attach(study)
    proposal = ask_tell.propose()  # infeasible candidates before it are recorded, and so refresh the page
    assert proposal is not None and refresh.writes == len(heard)
    (proposal.trial_dir / "metrics.json").write_text(json.dumps({"status": "complete", "epochs_trained": 1,
                                                                  "accuracy": 0.8, "wall_time_s": 1.0}))
    row = ask_tell.finish(proposal.number, json.loads((proposal.trial_dir / "metrics.json").read_text()))
    assert row["status"] == "complete" and heard[-1] is row and refresh.writes == len(heard) >= 1
    page = (out / "report.html").read_text()
    assert f"ram-profile-t{proposal.number}" in figures(page)

    done = make_run(tmp_path / "done", trials=10)
    (done / "report.html").unlink(missing_ok=True)
    lines: list[str] = []
    run_search(SearchConfig(space="fashion-mnist", budget=BUDGET, out=str(done), trials=10, resume=True),
               printer=lines.append)
    assert not (done / "report.html").exists()  # the library search knows nothing of reports
    assert main(["search", "--out", str(done), "--resume", "--trials", "10", "--ram-budget", "8KB"]) == 0
    assert (done / "report.html").exists()


def test_a_cost_only_run_plots_its_scored_candidates(tmp_path):
    """A ``search --cost-only`` run has only scored (and infeasible, invalid) rows: every one with
    costs is a point of each Pareto plot, in the strip of candidates without an accuracy."""
    run = make_run(tmp_path / "cost-only", trials=24, outcome="scored")
    table = pd.read_parquet(run / "trials.parquet")
    scored = set(table.loc[table["status"] == "scored", "trial"])
    assert scored and "complete" not in set(table["status"])
    figs = figures((write_report(run)).read_text())
    for column in ("peak_ram_bytes", "madds"):
        fig = figs[f"pareto-{column}"]
        drawn = {int(t): (trace["meta"]["status"], trace["y"][0]) for trace in fig["data"]
                 if (trace.get("meta") or {}).get("status") for t in values(trace["customdata"])}
        assert {t for t, (status, _) in drawn.items() if status == "scored"} == scored
        assert {label for status, label in drawn.values() if status == "scored"} == {"scored (not trained)"}
        # nothing trained: one panel, its category axis and the cost axis titled
        layout = fig["layout"]
        assert "xaxis2" not in layout and layout["yaxis"]["type"] == "category"
        assert layout["xaxis"]["title"]["text"].endswith("log scale") and layout["yaxis"]["title"]["text"]


def test_latency_plot_and_a_budget_without_ram(tmp_path):
    """A run with latencies and only an MAdds budget: a latency plot, the MAdds budget line,
    no hypervolume (it is measured against the RAM budget)."""
    budget = Budget(madds=3_000_000, name="madds-only")
    run = make_run(tmp_path / "madds", trials=16, budget=budget)
    store = RunStore.open(run)
    for row in store.rows.values():
        if row["madds"] == row["madds"]:
            row["latency_ms"] = row["madds"] / 168e3  # one MAdd per cycle at 168 MHz
    store.save()
    table = pd.read_parquet(run / "trials.parquet")
    page = write_report(run).read_text()
    figs = figures(page)
    latency = figs["pareto-latency_ms"]
    points = {t: x for trace in latency["data"] if (trace.get("meta") or {}).get("status")
              for t, x in zip(trace["customdata"], values(trace["x"]))}
    assert points == pytest.approx(dict(zip(table["trial"], table["latency_ms"])))
    madds_lines = [s for s in figs["pareto-madds"]["layout"]["shapes"] if s["type"] == "line"]
    assert madds_lines and all(s["x0"] == pytest.approx(3.0) for s in madds_lines)
    assert not [s for s in figs["pareto-peak_ram_bytes"]["layout"].get("shapes", []) if s["type"] == "line"]
    assert [t["meta"]["role"] for t in figs["progress"]["data"]] == ["best_accuracy"]
    assert "accuracy/RAM hypervolume" not in page
