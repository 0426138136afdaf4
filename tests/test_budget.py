"""Budgets: sizes, MAdds and latencies as users write them, device profiles, CLI overrides."""

from __future__ import annotations

import pytest

from rnnpool_nas.cost import Costs
from rnnpool_nas.errors import UserError
from rnnpool_nas.run.budget import (
    CONSTRAINTS_DIR,
    Budget,
    list_profiles,
    load_constraints,
    parse_bytes,
    parse_latency,
    parse_madds,
    resolve_budget,
)

KIB, MIB = 1024, 2**20


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    "text,expected",
    [
        (262144, 262144), ("262144", 262144), ("256KB", 256 * KIB), ("256KiB", 256 * KIB), ("256kb", 256 * KIB),
        ("256 KB", 256 * KIB), ("256k", 256 * KIB), ("0.25MB", 256 * KIB), ("0.25MiB", 256 * KIB),
        ("1MiB", MIB), ("1mb", MIB), ("512B", 512), ("1.5KB", 1536), ("1GB", 2**30), (" 64 KiB ", 64 * KIB),
        ("2e3B", 2000),
    ],
)
def test_parse_bytes_accepts(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text", [-1, 0, "0", "0KB", "-5KB", "256XB", "abc", "1e400", "", "KB", "nan", "inf", True, None, 10**400, "256 K B", "0.1B"]
)
def test_parse_bytes_rejects(text):
    with pytest.raises(UserError) as exc:
        parse_bytes(text)
    message = _one_line(exc)
    assert repr(text) in message and "KiB" in message  # names the value, gives the forms


def test_parse_bytes_names_the_field():
    with pytest.raises(UserError, match=r"^--ram-budget: bad size '256XB'"):
        parse_bytes("256XB", "--ram-budget")


@pytest.mark.parametrize(
    "text,expected",
    [("60M", 60_000_000), ("60m", 60_000_000), ("1.5G", 1_500_000_000), ("500k", 500_000), ("500K", 500_000),
     ("60000000", 60_000_000), (60_000_000, 60_000_000), ("128 M", 128_000_000)],
)
def test_parse_madds_accepts(text, expected):
    assert parse_madds(text) == expected


@pytest.mark.parametrize("text", ["60MB", "-1", "0", "abc", "1e400", "", "60T", None, False])
def test_parse_madds_rejects(text):
    with pytest.raises(UserError) as exc:
        parse_madds(text)
    assert repr(text) in _one_line(exc) and "60M" in str(exc.value)


@pytest.mark.parametrize(
    "text,expected",
    [("1s", 1.0), ("800ms", 0.8), ("1.5s", 1.5), ("250us", 250e-6), ("250µs", 250e-6), ("2", 2.0), (2, 2.0),
     (0.5, 0.5), ("100 MS", 0.1)],
)
def test_parse_latency_accepts(text, expected):
    assert parse_latency(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["1h", "-1s", "0s", "0", "abc", "", "1e400s", None, "1 min"])
def test_parse_latency_rejects(text):
    with pytest.raises(UserError) as exc:
        parse_latency(text)
    assert repr(text) in _one_line(exc) and "800ms" in str(exc.value)


# ------------------------------------------------------------------------------ profiles


def test_shipped_profiles():
    assert {"cortex-m4-256k", "vww-250k", "cortex-m7-512k"} <= set(list_profiles())
    m4 = load_constraints(CONSTRAINTS_DIR / "cortex-m4-256k.yaml")
    assert m4 == Budget(256 * KIB, MIB, 128_000_000, None, "int8", "standard", 168.0, "cortex-m4-256k")
    vww = load_constraints(CONSTRAINTS_DIR / "vww-250k.yaml")
    assert (vww.ram_bytes, vww.flash_bytes, vww.madds, vww.dtype) == (250 * KIB, 250 * KIB, 60_000_000, "int8")
    m7 = load_constraints(CONSTRAINTS_DIR / "cortex-m7-512k.yaml")
    assert (m7.ram_bytes, m7.flash_bytes, m7.madds, m7.clock_mhz) == (512 * KIB, 2 * MIB, None, 216.0)


def test_profile_all_fields_and_default_name(tmp_path):
    path = tmp_path / "board.yaml"
    path.write_text("ram: 96KB\nflash: 0.5MiB\nmadds: 20M\nlatency: 250ms\ndtype: float32\n"
                    "convention: optimal\nclock_mhz: 80\n")
    budget = load_constraints(path)
    assert budget == Budget(96 * KIB, 512 * KIB, 20_000_000, 0.25, "float32", "optimal", 80.0, "board")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_constraints(tmp_path / "empty.yaml") == Budget(name="empty")


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("ram: 256XB\n", r"bad\.yaml: field 'ram': bad size '256XB'"),
        ("ram: -3\n", r"bad\.yaml: field 'ram': bad size -3"),
        ("flash: lots\n", r"bad\.yaml: field 'flash': bad size 'lots'"),
        ("madds: 60MB\n", r"bad\.yaml: field 'madds': bad MAdds count '60MB'"),
        ("latency: 1h\n", r"bad\.yaml: field 'latency': bad latency '1h'"),
        ("dtype: int4\n", r"bad\.yaml: field 'dtype': unknown dtype 'int4'"),
        ("convention: best\n", r"bad\.yaml: field 'convention': unknown RAM convention 'best'"),
        ("clock_mhz: fast\n", r"bad\.yaml: field 'clock_mhz': must be a positive number"),
        ("ram: 256KB\nrom: 1MB\n", r"bad\.yaml: unknown field 'rom'"),
        ("- ram\n- 256KB\n", r"bad\.yaml: a constraints file must be a mapping"),
        ("ram: [256KB\nflash: 1MB\n", r"bad\.yaml: not valid YAML at line \d+"),
    ],
)
def test_profile_errors_name_file_and_field(tmp_path, text, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=pattern) as exc:
        load_constraints(path)
    _one_line(exc)


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nram: 256KB\nflash: [1MB\n")
    with pytest.raises(UserError, match=r"broken\.yaml: not valid YAML at line 4") as exc:
        load_constraints(path)
    _one_line(exc)


def test_missing_profile_file(tmp_path):
    with pytest.raises(UserError, match=r"cannot read constraints file .*nope\.yaml") as exc:
        load_constraints(tmp_path / "nope.yaml")
    _one_line(exc)


# ------------------------------------------------------------------------ resolve_budget


def test_resolve_by_name_path_and_none(tmp_path):
    assert resolve_budget("cortex-m4-256k").ram_bytes == 256 * KIB
    assert resolve_budget(str(CONSTRAINTS_DIR / "vww-250k.yaml")).name == "vww-250k"
    assert resolve_budget(None) == Budget()
    assert resolve_budget() == Budget()


def test_resolve_name_from_current_directory(tmp_path, monkeypatch):
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints" / "my-board.yaml").write_text("ram: 64KB\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_budget("my-board") == Budget(ram_bytes=64 * KIB, name="my-board")
    assert resolve_budget("constraints/my-board.yaml").ram_bytes == 64 * KIB


def test_resolve_unknown_name_lists_profiles():
    with pytest.raises(UserError, match=r"unknown constraints profile 'cortex-m0'.*cortex-m4-256k") as exc:
        resolve_budget("cortex-m0")
    _one_line(exc)
    with pytest.raises(UserError, match=r"cannot read constraints file"):
        resolve_budget("no/such/file.yaml")


def test_flags_override_the_profile():
    budget = resolve_budget("cortex-m4-256k", ram="128KB", madds="60M", latency="2s", dtype="float32",
                            convention="optimal")
    assert budget == Budget(128 * KIB, MIB, 60_000_000, 2.0, "float32", "optimal", 168.0, "cortex-m4-256k")
    assert resolve_budget(None, ram=300_000, flash="2MiB") == Budget(ram_bytes=300_000, flash_bytes=2 * MIB)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [({"ram": "big"}, r"^RAM budget: bad size 'big'"), ({"flash": "0"}, r"^flash budget: bad size '0'"),
     ({"madds": "x"}, r"^MAdds budget: bad MAdds count 'x'"), ({"latency": "soon"}, r"^latency budget: bad latency"),
     ({"dtype": "int4"}, r"unknown dtype 'int4'"), ({"convention": "x"}, r"unknown RAM convention 'x'")],
)
def test_bad_flags(kwargs, pattern):
    with pytest.raises(UserError, match=pattern) as exc:
        resolve_budget("cortex-m4-256k", **kwargs)
    _one_line(exc)


# ------------------------------------------------------------------- violations, excess


def _costs(ram=100 * KIB, model=200 * KIB, madds=50_000_000, latency_ms=None) -> Costs:
    return Costs(ram, madds, 1000, model, "2.0", "standard", "int8", False, latency_ms=latency_ms)


def test_violations_and_excess():
    budget = Budget(ram_bytes=256 * KIB, flash_bytes=MIB, madds=128_000_000, latency_s=1.0)
    assert budget.constraint_names() == ["ram", "flash", "madds", "latency"]
    fits = _costs(latency_ms=500.0)
    assert budget.violations(fits) == [] and budget.fits(fits)
    assert budget.excess(fits) == pytest.approx([100 / 256 - 1, 200 / 1024 - 1, 50 / 128 - 1, -0.5])
    over = _costs(ram=300 * KIB, model=int(1.5 * MIB), madds=150_000_000, latency_ms=1250.0)
    assert budget.violations(over) == [
        "peak RAM 300.0 KiB > 256.0 KiB",
        "model 1.50 MiB > flash 1.00 MiB",
        "MAdds 150.0M > 128.0M",
        "latency 1.25 s > 1.00 s",
    ]
    assert budget.excess(over) == pytest.approx([300 / 256 - 1, 0.5, 150 / 128 - 1, 0.25])
    assert not budget.fits(over)
    at_limit = _costs(ram=256 * KIB)
    assert budget.violations(at_limit) == [] and budget.excess(at_limit)[0] == 0.0


def test_excess_length_is_fixed():
    """Optuna's constraints_func output: one value per active limit, whatever the costs."""
    budget = Budget(ram_bytes=64 * KIB, latency_s=0.5)
    assert budget.constraint_names() == ["ram", "latency"]
    unknown_latency = _costs(ram=128 * KIB)
    assert budget.excess(unknown_latency) == [1.0, 0.0]  # an unknown latency counts as met
    assert budget.violations(unknown_latency) == ["peak RAM 128.0 KiB > 64.0 KiB"]
    assert Budget().excess(unknown_latency) == [] and Budget().violations(unknown_latency) == []


def test_describe():
    assert resolve_budget("cortex-m4-256k").describe() == (
        "cortex-m4-256k: RAM <= 256.0 KiB, flash <= 1.00 MiB, MAdds <= 128.0M, int8, standard")


def test_dict_round_trip():
    budget = resolve_budget("vww-250k", latency="800ms")
    data = budget.to_dict()
    assert data == {"ram_bytes": 250 * KIB, "flash_bytes": 250 * KIB, "madds": 60_000_000, "latency_s": 0.8,
                    "dtype": "int8", "convention": "standard", "clock_mhz": 168.0, "name": "vww-250k"}
    assert Budget.from_dict(data) == budget
    assert Budget.from_dict({}) == Budget()


@pytest.mark.parametrize(
    "data,pattern",
    [({"ram": 5}, r"unknown field 'ram'"), ({"ram_bytes": "256KB"}, r"field 'ram_bytes' must be a positive integer"),
     ({"latency_s": -1}, r"field 'latency_s'"), ({"dtype": "int4"}, r"unknown dtype"), ([], r"must be a mapping"),
     ({"clock_mhz": 0}, r"field 'clock_mhz'")],
)
def test_from_dict_rejects(data, pattern):
    with pytest.raises(UserError, match=pattern):
        Budget.from_dict(data)
