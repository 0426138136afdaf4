"""Search spaces: loading, validation errors, conditional Optuna parameters, building specs."""

from __future__ import annotations

import copy
import itertools
import random
import statistics

import optuna
import pytest
import yaml

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.spec import SpecError
from rnnpool_nas.cost import evaluate
from rnnpool_nas.errors import UserError
from rnnpool_nas.run.budget import Budget
from rnnpool_nas.search.space import SPACES_DIR, SearchSpace, find_space, list_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)
SHIPPED = ["fashion-mnist", "vww", "face-detection"]
KIB = 1024

#: A small space exercising every part: stem, RNNPool with a none placement, omittable stage.
BASE = {
    "name": "small",
    "task": "classification",
    "dataset": "fashion-mnist",
    "num_classes": 10,
    "input_channels": 1,
    "input_size": [28, 32],
    "width": [0.5, 1.0],
    "stem": {"c": [8, 16], "stride": [1, 2]},
    "rnnpool": {"placement": ["none", 0, 2], "patch_size": [4, 6], "stride": [2, 4], "h1": [4, 8], "h2": 8},
    "stages": [
        {"t": 1, "c": 16, "n": 1, "s": 1},
        {"t": [2, 4], "c": 24, "n": [1, 2], "s": 2},
        {"t": [2, 4], "c": 32, "n": [0, 1], "s": 2},
    ],
    "last_conv": [0, 64],
    "final_pool": ["avg", "rnnpool"],
    "dropout": 0.1,
}


def _write(tmp_path, data, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def _same_network(a, b) -> bool:
    da, db = a.to_dict(), b.to_dict()
    da.pop("name"), db.pop("name")
    return da == db


# ------------------------------------------------------------------------------ loading


def test_shipped_spaces_listed():
    assert set(SHIPPED) <= set(list_spaces())


@pytest.mark.parametrize("name", SHIPPED)
def test_load_by_name_and_path(name):
    by_name = SearchSpace.load(name)
    by_path = SearchSpace.load(SPACES_DIR / f"{name}.yaml")
    by_str = SearchSpace.load(str(SPACES_DIR / f"{name}.yaml"))
    assert by_name.name == name and by_name.to_dict() == by_path.to_dict() == by_str.to_dict()
    assert by_name.task == ("detection" if name == "face-detection" else "classification")


def test_attributes():
    space = SearchSpace.load("fashion-mnist")
    assert (space.name, space.task, space.dataset, space.num_classes) == ("fashion-mnist", "classification",
                                                                         "fashion-mnist", 10)
    vww = SearchSpace.load("vww")
    assert vww.num_classes == 2 and vww.input_channels == 3
    face = SearchSpace.load("face-detection")
    assert face.dataset == "faces-synth" and len(face.heads) == 6


def test_load_from_current_directory(tmp_path, monkeypatch):
    (tmp_path / "search_spaces").mkdir()
    _write(tmp_path / "search_spaces", BASE, "mine.yaml")
    monkeypatch.chdir(tmp_path)
    assert SearchSpace.load("mine").name == "small"
    assert find_space("mine") == tmp_path / "search_spaces" / "mine.yaml"
    assert SearchSpace.load("search_spaces/mine.yaml").name == "small"


def test_name_defaults_to_file_stem(tmp_path):
    data = dict(BASE)
    del data["name"]
    assert SearchSpace.load(_write(tmp_path, data, "stemmed.yaml")).name == "stemmed"


def test_unknown_name_suggests():
    with pytest.raises(UserError, match=r"unknown search space 'fashion-mnst' \(did you mean fashion-mnist\?") as exc:
        SearchSpace.load("fashion-mnst")
    _one_line(exc)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"cannot read search space .*absent\.yaml") as exc:
        SearchSpace.load(tmp_path / "absent.yaml")
    _one_line(exc)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nnum_classes: 10\ninput_size: [28, 32\nwidth: 1.0\n")
    with pytest.raises(UserError, match=r"broken\.yaml: not valid YAML at line 4") as exc:
        SearchSpace.load(path)
    _one_line(exc)
    path.write_text("name: x\n  bad indent: [\n")
    with pytest.raises(UserError, match=r"broken\.yaml: not valid YAML at line \d"):
        SearchSpace.load(path)


def _edit(path_keys, value):
    """BASE with ``data[k1][k2]... = value`` (``value`` ``...`` deletes the key)."""
    data = copy.deepcopy(BASE)
    node = data
    for key in path_keys[:-1]:
        node = node[key]
    if value is ...:
        del node[path_keys[-1]]
    else:
        node[path_keys[-1]] = value
    return data


def _detection(**changes):
    data = {k: v for k, v in copy.deepcopy(BASE).items() if k not in ("last_conv", "final_pool", "dropout")}
    data["task"] = "detection"
    data["heads"] = [{"after": "stage2", "anchor": 16}]
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data,key,problem",
    [
        (_edit(["colour"], 1), "colour", "unknown key"),
        (_edit(["widht"], 1.0), "widht", "did you mean 'width'"),
        (_edit(["stages", 1, "expansion"], 2), "stage2.expansion", "unknown key"),
        (_edit(["stages", 1, "t"], "six"), "stage2.t", "must be a positive integer, got 'six'"),
        (_edit(["stages", 1, "t"], [2, "six"]), "stage2.t", "must be a positive integer, got 'six'"),
        (_edit(["stages", 1, "t"], ...), "stage2.t", "missing"),
        (_edit(["stages", 1, "n"], [-1, 1]), "stage2.n", "must be an integer >= 0"),
        (_edit(["stages", 1, "s"], {"a": 1}), "stage2.s", "must be a value or a list of choices"),
        (_edit(["stages", 1], [1, 2]), "stage2", "must be a mapping"),
        (_edit(["stages"], []), "stages", "non-empty list"),
        (_edit(["width"], []), "width", "empty list of choices"),
        (_edit(["width"], [0.5, -1]), "width", "must be a positive number, got -1"),
        (_edit(["width"], [0.5, 0.5]), "width", "duplicate choice 0.5"),
        (_edit(["input_size"], ["28y28"]), "input_size", "\"HxW\""),
        (_edit(["input_size"], ...), "input_size", "missing"),
        (_edit(["num_classes"], ...), "num_classes", "missing"),
        (_edit(["num_classes"], 0), "num_classes", "must be a positive integer, got 0"),
        (_edit(["input_channels"], "grey"), "input_channels", "must be a positive integer"),
        (_edit(["task"], "segmentation"), "task", "must be one of classification, detection"),
        (_edit(["dataset"], 3), "dataset", "must be a data set name or null"),
        (_edit(["dtype"], "int4"), "dtype", "must be one of int8, float32"),
        (_edit(["convention"], "best"), "convention", "must be one of standard, optimal"),
        (_edit(["stem"], 16), "stem", "must be a mapping"),
        (_edit(["stem", "c"], ...), "stem.c", "missing"),
        (_edit(["stem", "stride"], [1, 0]), "stem.stride", "must be a positive integer, got 0"),
        (_edit(["stem", "channels"], 8), "stem.channels", "unknown key"),
        (_edit(["rnnpool", "placement"], ["none", 4]), "rnnpool.placement", "4 is larger than the number of stages (3)"),
        (_edit(["rnnpool", "placement"], ["first"]), "rnnpool.placement", "must be none or an integer k >= 0"),
        (_edit(["rnnpool", "placement"], ...), "rnnpool.placement", "missing"),
        (_edit(["rnnpool", "h1"], ...), "rnnpool.h1", "missing (needed when the placement is not none)"),
        (_edit(["rnnpool", "h2"], [8, 0]), "rnnpool.h2", "must be a positive integer, got 0"),
        (_edit(["rnnpool", "padding"], "full"), "rnnpool.padding", "must be an integer >= 0 or one of valid, same, reference"),
        (_edit(["rnnpool", "batch_norm"], "yes"), "rnnpool.batch_norm", "must be true or false"),
        (_edit(["rnnpool", "hidden"], 8), "rnnpool.hidden", "unknown key"),
        (_edit(["final_pool"], ["avg", "median"]), "final_pool", "must be one of avg, max, rnnpool"),
        (_edit(["dropout"], 1.0), "dropout", "must be a number in [0, 1)"),
        (_edit(["last_conv"], [-8]), "last_conv", "must be an integer >= 0"),
        (_edit(["heads"], [{"after": "stage1", "anchor": 16}]), "heads", "only for task: detection"),
        (_detection(last_conv=64), "last_conv", "only for task: classification"),
        (_detection(heads=[]), "heads", "needs a non-empty list"),
        (_detection(heads=[{"after": "stage9", "anchor": 16}]), "heads[1].after", "must be one of stem, rnnpool, stage1"),
        (_detection(heads=[{"after": "stage1", "anchor": 0}]), "heads[1].anchor", "must be a positive integer"),
        (_detection(heads=[{"after": "stage1", "anchor": 16, "l2": True}]), "heads[1].l2", "unknown key"),
        (_detection(heads=[{"after": "stage1", "anchor": 16, "max_out": 1}]), "heads[1].max_out", "must be true or false"),
        (_detection(heads=[{"after": "stage1", "anchor": 16, "extra_conv": {"c": 8, "pad": 1}}]),
         "heads[1].extra_conv.pad", "unknown key"),
        (_detection(heads=[{"after": "stage1", "anchor": 16, "extra_conv": {"kernel": 3}}]),
         "heads[1].extra_conv", "must be a mapping {c, kernel, stride}"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, data, key, problem):
    path = _write(tmp_path, data, "bad-space.yaml")
    with pytest.raises(UserError) as exc:
        SearchSpace.load(path)
    message = _one_line(exc)
    assert message.startswith(f"{path}: key {key!r}: "), message
    assert problem in message, message
    assert not isinstance(exc.value, SpecError)


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match=r"list\.yaml: a search space must be a mapping"):
        SearchSpace.load(path)


# --------------------------------------------------------------------------- parameters


def test_param_names_are_stable_and_conditional(tmp_path):
    space = SearchSpace.from_dict(BASE)
    assert space.param_names() == [
        "input_size", "width", "stem.c", "stem.stride", "rnnpool.placement", "rnnpool.patch_size",
        "rnnpool.stride", "rnnpool.h1", "stage2.n", "stage2.t", "stage3.n", "stage3.t", "last_conv", "final_pool",
    ]
    assert space.param_choices()["rnnpool.placement"] == ["none", 0, 2]
    no_pool = SearchSpace.from_dict(_edit(["rnnpool", "placement"], "none"))
    assert not any(n.startswith("rnnpool.") for n in no_pool.param_names())
    no_section = SearchSpace.from_dict(_edit(["rnnpool"], ...))
    assert not any(n.startswith("rnnpool.") for n in no_section.param_names())
    always_replaced = SearchSpace.from_dict(_edit(["rnnpool", "placement"], [2, 3]))
    assert not any(n.startswith(("stage1.", "stage2.")) for n in always_replaced.param_names())


def _ask(space, study, fixed):
    study.enqueue_trial(fixed)
    trial = study.ask()
    try:
        space.sample(trial)
    except SpecError:
        pass
    return trial


def test_conditional_params_through_optuna():
    space = SearchSpace.from_dict(BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    none = _ask(space, study, {"rnnpool.placement": "none", "stage3.n": 0})
    assert none.params["rnnpool.placement"] == "none"
    assert not [k for k in none.params if k.startswith("rnnpool.") and k != "rnnpool.placement"]
    assert "stage2.t" in none.params and "stage3.n" in none.params and "stage3.t" not in none.params
    placed = _ask(space, study, {"rnnpool.placement": 2, "stage3.n": 1})
    assert {"rnnpool.patch_size", "rnnpool.stride", "rnnpool.h1"} <= set(placed.params)
    assert "rnnpool.h2" not in placed.params  # fixed: never suggested
    assert not [k for k in placed.params if k.startswith("stage2.")]  # replaced by the RNNPool
    assert placed.params["stage3.t"] in (2, 4)
    assert set(placed.params) <= set(space.param_names())


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_samplers_run(sampler):
    space = SearchSpace.load("fashion-mnist")
    samplers = {
        "random": optuna.samplers.RandomSampler(seed=1),
        "tpe": optuna.samplers.TPESampler(seed=1, n_startup_trials=5),
        "nsga2": optuna.samplers.NSGAIISampler(seed=1, population_size=6),
    }
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=samplers[sampler])
    for _ in range(16):
        trial = study.ask()
        try:
            costs = evaluate(space.sample(trial), "int8", profile=False)
        except SpecError:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, [costs.peak_ram_bytes, costs.madds])
    assert len(study.trials) == 16


def test_sample_is_suggest_then_build():
    space = SearchSpace.load("fashion-mnist")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    spec = space.sample(trial)
    assert spec.to_json() == space.build(trial.params).to_json()


def test_build_is_deterministic():
    space = SearchSpace.load("fashion-mnist")
    rng = random.Random(5)
    for _ in range(20):
        params = space.random_params(rng)
        assert space.build(params).to_json() == space.build(dict(params)).to_json()
    a, b = random.Random(9), random.Random(9)
    assert [space.random_params(a) for _ in range(5)] == [space.random_params(b) for _ in range(5)]


def test_build_ignores_inactive_and_rejects_unknown():
    space = SearchSpace.from_dict(BASE)
    params = {"input_size": 28, "width": 1.0, "stem.c": 8, "stem.stride": 1, "rnnpool.placement": "none",
              "stage2.n": 1, "stage2.t": 2, "stage3.n": 0, "last_conv": 0, "final_pool": "avg"}
    spec = space.build(params)
    inactive = dict(params, **{"rnnpool.h1": 8, "stage3.t": 4})
    assert space.active(inactive) == params and space.active(dict(params, width=1)) == params
    assert space.build(inactive).to_json() == spec.to_json()
    assert space.build(dict(params, **{"rnnpool.h2": 8})).to_json() == spec.to_json()  # a fixed value
    cases = [
        (dict(params, colour=1), r"unknown parameter 'colour'"),
        (dict(params, **{"stage2.tt": 1}), r"unknown parameter 'stage2.tt'; did you mean 'stage2.t'"),
        ({k: v for k, v in params.items() if k != "width"}, r"parameter 'width' missing"),
        (dict(params, width=0.75), r"parameter 'width' = 0.75 is not one of \[0.5, 1.0\]"),
        (dict(params, **{"rnnpool.placement": 0, "rnnpool.patch_size": 4, "rnnpool.stride": 2, "rnnpool.h1": 4,
                         "rnnpool.h2": 4}), r"parameter 'rnnpool.h2' = 4 is not one of \[8\]"),
        (dict(params, **{"rnnpool.placement": "0"}), r"parameter 'rnnpool.placement' = '0' is not one of"),
    ]
    for bad, pattern in cases:
        with pytest.raises(UserError, match=pattern) as exc:
            space.build(bad)
        assert not isinstance(exc.value, SpecError)


def test_placement_and_omitted_stages_shape_the_spec():
    space = SearchSpace.from_dict(BASE)
    common = {"input_size": 32, "width": 1.0, "stem.c": 16, "stem.stride": 1, "last_conv": 64, "final_pool": "rnnpool"}
    rnnpool = {"rnnpool.patch_size": 4, "rnnpool.stride": 2, "rnnpool.h1": 8}
    plain = space.build({**common, "rnnpool.placement": "none", "stage2.n": 2, "stage2.t": 4, "stage3.n": 1,
                         "stage3.t": 2})
    assert [s.type for s in plain.stages] == ["conv", "bottleneck", "bottleneck", "bottleneck", "conv", "pool", "linear"]
    assert plain.stages[-2].kind == "rnnpool" and plain.input == (32, 32, 1)
    zero = space.build({**common, **rnnpool, "rnnpool.placement": 0, "stage2.n": 1, "stage2.t": 2, "stage3.n": 0})
    assert [s.type for s in zero.stages][:4] == ["conv", "rnnpool", "bottleneck", "bottleneck"]
    two = space.build({**common, **rnnpool, "rnnpool.placement": 2, "stage3.n": 1, "stage3.t": 4})
    assert [s.type for s in two.stages] == ["conv", "rnnpool", "bottleneck", "conv", "pool", "linear"]
    assert (two.stages[1].h1, two.stages[1].h2, two.stages[2].c, two.stages[2].t) == (8, 8, 32, 4)
    half = space.build({**common, **rnnpool, "width": 0.5, "rnnpool.placement": 2, "stage3.n": 1, "stage3.t": 4})
    assert half.stages[2].c == 16 and half.stages[0].c == 16  # width scales stages, not the stem


def test_invalid_combination_is_a_spec_error(tmp_path):
    data = _edit(["input_size"], [8, 32])
    data["rnnpool"]["patch_size"] = [4, 6]
    space = SearchSpace.from_dict(data)
    params = {"input_size": 8, "width": 1.0, "stem.c": 8, "stem.stride": 2, "rnnpool.placement": 0,
              "rnnpool.patch_size": 6, "rnnpool.stride": 2, "rnnpool.h1": 4, "stage2.n": 1, "stage2.t": 2,
              "stage3.n": 0, "last_conv": 0, "final_pool": "avg"}
    with pytest.raises(SpecError, match="patch_size 6 is larger than the input"):
        space.build(params)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params)
    trial = study.ask()
    assert space.suggest(trial) == params  # suggesting never fails; building does
    with pytest.raises(SpecError):
        space.sample(trial)


def test_detection_heads_follow_their_stages():
    space = SearchSpace.from_dict(_detection(heads=[
        {"after": "stem", "anchor": 8, "extra_conv": {"c": 8, "stride": 2}, "max_out": True},
        {"after": "stage2", "anchor": 16, "l2norm": True}, {"after": "stage3", "anchor": 32}]))
    params = {"input_size": 32, "width": 1.0, "stem.c": 8, "stem.stride": 1, "rnnpool.placement": 2,
              "rnnpool.patch_size": 4, "rnnpool.stride": 2, "rnnpool.h1": 4, "stage3.n": 1, "stage3.t": 2}
    spec = space.build(params)
    assert [(s.stage, s.anchor) for s in spec.detection.sources] == [(0, 8), (2, 32)]  # stage2 replaced: dropped
    assert spec.detection.sources[0].extra_conv == {"c": 8, "stride": 2} and spec.detection.sources[0].max_out
    assert evaluate(spec).peak_ram_bytes > 0
    lonely = SearchSpace.from_dict(_detection(heads=[{"after": "stage3", "anchor": 16}]))
    with pytest.raises(SpecError, match="every detection head follows an omitted stage"):
        lonely.build(dict(params, **{"stage3.n": 0}))


def test_size_counts_distinct_param_dicts():
    space = SearchSpace.from_dict(BASE)
    seen = set()
    names = space.param_names()
    # brute force: every combination of every parameter, keeping its active part
    for combo in itertools.product(*(space.param_choices()[n] for n in names)):
        full = dict(zip(names, combo))
        seen.add(tuple(space.active(full).items()))
    assert space.size() == len(seen)


def test_dict_round_trip():
    for name in SHIPPED:
        space = SearchSpace.load(name)
        again = SearchSpace.from_dict(space.to_dict())
        assert again.to_dict() == space.to_dict() and again.param_choices() == space.param_choices()
        params = space.random_params(random.Random(0))
        assert again.build(params).to_json() == space.build(params).to_json()


# ----------------------------------------------------------------------- shipped spaces


def _samples(space, n=300, seed=0):
    rng = random.Random(seed)
    built, costs = 0, []
    for _ in range(n):
        try:
            spec = space.build(space.random_params(rng))
        except SpecError:
            continue
        built += 1
        costs.append(evaluate(spec, "int8", profile=False))
    return built / n, costs


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_build(name):
    space = SearchSpace.load(name)
    fraction, costs = _samples(space)
    assert fraction >= 0.9, f"{name}: only {fraction:.0%} of random parameter dicts build"
    for corner in space.corners():
        space.build(corner)
    assert space.size() > 1000
    spec = space.build(space.random_params(random.Random(1)))
    assert (spec.detection is not None) == (space.task == "detection")


def test_fashion_mnist_spans_a_meaningful_ram_range():
    _, costs = _samples(SearchSpace.load("fashion-mnist"))
    peaks = [c.peak_ram_bytes for c in costs]
    assert min(peaks) < 256 * KIB and max(peaks) > 16 * KIB
    assert sum(p > 16 * KIB for p in peaks) >= 5
    assert statistics.median(c.madds for c in costs) < 5e6  # small enough to train quickly


def test_presets_are_points_of_the_shipped_spaces():
    tiny = SearchSpace.load("fashion-mnist").build({
        "input_size": 28, "width": 1.0, "stem.c": 16, "stem.stride": 1, "rnnpool.placement": 2,
        "rnnpool.patch_size": 4, "rnnpool.stride": 2, "rnnpool.h1": 8, "rnnpool.h2": 8, "stage3.n": 2,
        "stage3.t": 4, "stage4.n": 2, "stage4.t": 4, "stage5.n": 0, "last_conv": 128, "final_pool": "avg"})
    assert _same_network(tiny, get_preset("rnnpool-tiny"))
    vww = SearchSpace.load("vww")
    deep = {"stage4.n": 4, "stage4.t": 6, "stage5.n": 3, "stage5.t": 6, "stage6.n": 3, "stage6.t": 6, "stage7.n": 1,
            "last_conv": 320, "final_pool": "avg", "input_size": 224, "width": 0.35, "stem.c": 8}
    rnnpool = vww.build({**deep, "rnnpool.placement": 3, "rnnpool.patch_size": 6, "rnnpool.stride": 4,
                         "rnnpool.h1": 8, "rnnpool.h2": 8})
    assert _same_network(rnnpool, get_preset("mobilenetv2-0.35x-rnnpool-vww"))
    plain = vww.build({**deep, "rnnpool.placement": "none", "stage2.n": 2, "stage2.t": 6, "stage3.n": 3,
                       "stage3.t": 6})
    assert _same_network(plain, get_preset("mobilenetv2-0.35x-vww"))
    face = SearchSpace.load("face-detection").build({
        "input_size": "480x640x3", "stem.c": 4, "stem.n": 2, "rnnpool.patch_size": 8, "rnnpool.h1": 8,
        "rnnpool.h2": 8, "stage1.n": 4, "stage1.c": 16, "stage2.n": 4, "stage2.c": 24, "stage3.n": 2, "stage3.c": 32})
    ours, theirs = evaluate(face), evaluate(get_preset("rnnpool-face-quant"))
    assert (ours.peak_ram_bytes, ours.madds, ours.params) == (theirs.peak_ram_bytes, theirs.madds, theirs.params)
    assert ours.peak_ram_bytes == 230_400


# -------------------------------------------------------------------------- feasibility


def test_corners_are_cheap_and_span_placements():
    space = SearchSpace.from_dict(BASE)
    corners = space.corners()
    assert {c["rnnpool.placement"] for c in corners} == {"none", 0, 2}
    assert {c["stem.stride"] for c in corners} == {1, 2}
    for c in corners:
        assert c["input_size"] == 28 and c["width"] == 0.5 and c["stem.c"] == 8 and c["final_pool"] == "avg"
        assert c.get("stage2.n", 1) == 1 and c.get("stage3.n", 0) == 0
        if c["rnnpool.placement"] != "none":
            assert (c["rnnpool.stride"], c["rnnpool.patch_size"], c["rnnpool.h1"]) == (4, 4, 4)
    assert len(corners) == len({tuple(sorted(c.items(), key=str)) for c in corners})


@pytest.mark.parametrize("name", ["fashion-mnist", "vww"])
def test_cheapest_beats_random_samples(name):
    space = SearchSpace.load(name)
    budget = Budget(ram_bytes=256 * KIB)
    params, costs = space.cheapest(budget, samples=200, seed=0)
    assert costs.peak_ram_bytes == evaluate(space.build(params), "int8", profile=False).peak_ram_bytes
    _, others = _samples(space, n=200, seed=7)
    assert costs.peak_ram_bytes <= min(c.peak_ram_bytes for c in others)
    assert space.cheapest(budget, samples=200, seed=0)[0] == params  # seeded
    float32 = space.cheapest(Budget(dtype="float32"), samples=50)[1]
    assert float32.dtype == "float32" and float32.peak_ram_bytes == 4 * costs.peak_ram_bytes


def test_cheapest_prefers_a_candidate_that_fits_the_whole_budget():
    space = SearchSpace.load("fashion-mnist")
    smallest = space.cheapest(None, samples=100)[1]

    class Picky(Budget):  # a limit the smallest-RAM candidates break
        def violations(self, costs):
            return ["too small"] if costs.peak_ram_bytes < 4 * KIB else []

    params, costs = space.cheapest(Picky(), samples=100)
    assert 4 * KIB <= costs.peak_ram_bytes and smallest.peak_ram_bytes < 4 * KIB
    impossible = Budget(ram_bytes=1, madds=1)
    assert space.cheapest(impossible, samples=100)[1].peak_ram_bytes == smallest.peak_ram_bytes


def test_cheapest_when_nothing_builds():
    data = _edit(["input_size"], 4)
    data["stem"] = {"c": 8, "stride": 4}
    data["rnnpool"] = {"placement": 0, "patch_size": 8, "stride": 4, "h1": 4, "h2": 4}
    with pytest.raises(UserError, match=r"search space small: none of \d+ candidates builds \(.*patch_size 8") as exc:
        SearchSpace.from_dict(data).cheapest(samples=10)
    _one_line(exc)
