"""`rnnpool-nas cost` and `rnnpool-nas presets`: output, --dump-arch round trip, bad input."""

from __future__ import annotations

import json
import subprocess

import pytest

from rnnpool_nas.arch import list_presets
from rnnpool_nas.cli import main

from .test_cli import SCRIPT


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_presets_lists_every_preset(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == [p.name for p in list_presets()]


def test_cost_table(capsys):
    code, out, _ = run(capsys, "cost", "--preset", "mobilenetv2-rnnpool", "--dtype", "float32")
    assert code == 0
    assert "2.0    bottleneck    14x14x64    245.0" in out and "<- peak" in out
    assert "peak RAM  245.0 KiB (250,880 bytes) at 2.0" in out
    assert "input image not counted" in out


def test_cost_json_keys(capsys):
    code, out, _ = run(capsys, "cost", "--preset", "rnnpool-face-quant", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"peak_ram_bytes", "madds", "params", "model_bytes", "bottleneck", "stages"} <= set(data)
    assert data["peak_ram_bytes"] == 230_400 and isinstance(data["stages"], list)


def test_dump_arch_edit_and_cost(capsys, tmp_path):
    code, out, _ = run(capsys, "cost", "--preset", "mobilenetv2-rnnpool", "--dump-arch")
    spec = json.loads(out)
    path = tmp_path / "arch.json"
    path.write_text(out)
    _, base, _ = run(capsys, "cost", "--arch", str(path), "--json")
    pool = next(s for s in spec["stages"] if s["type"] == "rnnpool")
    pool.update(h1=8, h2=8, patch_size=4, stride=4)
    path.write_text(json.dumps(spec))
    _, edited, _ = run(capsys, "cost", "--arch", str(path), "--json")
    base, edited = json.loads(base), json.loads(edited)
    assert base["madds"] != edited["madds"]
    assert next(s for s in edited["stages"] if s["kind"] == "rnnpool")["out_shape"] == [28, 28, 32]


def test_set_and_input_overrides(capsys):
    _, out, _ = run(capsys, "cost", "--preset", "mobilenetv2-rnnpool", "--input", "96x96x1", "--classes", "10",
                    "--set", "h1=8", "--set", "patch_size=4,6", "--json")
    stages = json.loads(out)["stages"]
    assert stages[0]["out_shape"] == [48, 48, 32] and stages[-1]["out_shape"] == [1, 1, 10]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["cost", "--preset", "mobilenet-rnnpool"], "did you mean mobilenetv2-rnnpool"),
        (["cost", "--preset", "mobilenetv2", "--input", "224by224"], "--input must be HxWxC"),
        (["cost", "--preset", "mobilenetv2", "--set", "h1"], "--set expects FIELD=VALUE"),
        (["cost", "--preset", "mobilenetv2", "--set", "h1=8"], "no RNNPool stage"),
        (["cost", "--preset", "mobilenetv2-rnnpool", "--set", "colour=red"], "unknown field"),
        (["cost", "--preset", "mobilenetv2-rnnpool", "--set", "patch_size=500"], "larger than the input"),
        (["cost", "--arch", "/nonexistent/arch.json"], "cannot read architecture file"),
    ],
)
def test_bad_input_is_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_bad_files_from_the_console_script(tmp_path):
    """No traceback reaches the user: not JSON, and JSON that is not a valid spec."""
    notjson = tmp_path / "a.json"
    notjson.write_text("{stages: [")
    invalid = tmp_path / "b.json"
    invalid.write_text(json.dumps({"input": [32, 32, 3], "num_classes": 2, "stages": [{"type": "conv", "c": 0}]}))
    for path, message in ((notjson, "not valid JSON"), (invalid, "stage 0 (conv): field 'c' must be a positive integer")):
        proc = subprocess.run([SCRIPT, "cost", "--arch", str(path)], capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and message in proc.stderr and str(path) in proc.stderr
