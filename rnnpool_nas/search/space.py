"""Search spaces: a YAML file describing a family of RNNPool networks, turned into ArchSpecs.

A space is a MobileNetV2-style family: an optional stem convolution, an optional RNNPool, a
list of inverted-residual (bottleneck) stages, then a classifier tail (1x1 conv, global pool,
linear) or S3FD-style detection heads. Every tunable value is written either as a scalar (fixed)
or as a list of categorical choices; a one-element list is fixed too. Lists always mean
choices, so a fixed pair is written as a string (``"240x320"``) or as ``[[240, 320]]``.

Format (``search_spaces/README.md`` has the full reference and examples)::

    name: fashion-mnist              # default: the file's stem
    description: one line            # optional
    task: classification             # classification (default) | detection
    dataset: fashion-mnist           # default data set name (null: none)
    num_classes: 10
    input_channels: 1                # default 3
    dtype: int8                      # optional: the space's suggested element type and
    convention: standard             # RAM convention (cheapest() uses them without a budget)
    input_size: [28, 32]             # side S (SxS), "HxW" or "HxWxC" (overrides input_channels)
    width: [0.5, 0.75, 1.0]          # scales every stage's c (multiple of 8, at least 8)
    stem: {c: [8, 16], kernel: 3, stride: [1, 2], n: 1}   # a conv stage; null for none
    rnnpool:                         # optional
      placement: [none, 0, 1, 2]     # none, or k: after the stem, replacing stages 1..k
      patch_size: [4, 6, 8]          # these exist only when placement is not none
      stride: [2, 4]
      h1: [4, 8, 16]
      h2: [4, 8, 16]
      padding: reference             # optional, default reference
      batch_norm: true               # optional, default true
    stages:                          # numbered from 1: stage1, stage2, ...
      - {t: 1, c: 16, n: 1, s: 1, kernel: 3}
      - {t: [2, 4, 6], c: 24, n: [1, 2], s: 2}
      - {t: [2, 4, 6], c: 96, n: [0, 1], s: 1}    # n = 0 omits the stage
    # classification only:
    last_conv: [0, 64, 128]          # channels of the final 1x1 conv (not width-scaled); 0: none
    final_pool: [avg, rnnpool]       # global avg | max | an RNNPool over the whole map
    dropout: 0.1
    # detection only (each head is a Source of the spec; a head after an absent stage is dropped):
    heads:
      - {after: stem, anchor: 16, extra_conv: {c: 8, kernel: 3, stride: 2}, max_out: true}
      - {after: stage1, anchor: 32, l2norm: true}

Parameters. Each tunable with two or more choices is one Optuna categorical parameter with a
stable name: ``input_size``, ``width``, ``stem.c``, ``stem.kernel``, ``stem.stride``,
``stem.n``, ``rnnpool.placement``, ``rnnpool.patch_size``, ``rnnpool.stride``, ``rnnpool.h1``,
``rnnpool.h2``, ``rnnpool.padding``, ``rnnpool.batch_norm``, ``stageI.n``, ``stageI.t``,
``stageI.c``, ``stageI.s``, ``stageI.kernel``, ``last_conv``, ``final_pool``, ``dropout``.
Conditional parameters exist only when their part does: the ``rnnpool.*`` ones (other than the
placement) when the placement is not ``none``; a stage's parameters when the RNNPool does not
replace it, and its ``t``/``c``/``s``/``kernel`` only when its ``n`` is not 0.

API. :meth:`SearchSpace.load` reads and validates a file (every problem one line naming the
file and the key); :meth:`SearchSpace.suggest` asks a trial (``suggest_categorical`` only, so
any Optuna sampler works); :meth:`SearchSpace.build` is the pure function from a params dict
to an :class:`ArchSpec` and raises :class:`SpecError` for a combination that does not make a
valid network (e.g. an RNNPool patch larger than its input map): the caller records such a
trial as infeasible. :meth:`SearchSpace.sample` is suggest then build. Torch-free.
"""

from __future__ import annotations

import difflib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..arch.presets import scale_channels
from ..arch.spec import ArchSpec, Bottleneck, Conv, Detection, Linear, Pool, RNNPool, Source, SpecError, Stage
from ..cost import CONVENTIONS, DTYPE_BYTES, Costs
from ..errors import UserError
from ..resources import builtin_dir
from ..run import read_yaml
from ..run.budget import Budget
from ..ops.geometry import PADDING_MODES

#: Where named spaces live: the checkout's ``search_spaces/``, or its copy inside an installed package.
SPACES_DIR = builtin_dir("search_spaces")

Choice = Any  # int | float | str | bool: what Optuna's CategoricalDistribution accepts
TASKS = ("classification", "detection")
POOL_KINDS = ("avg", "max", "rnnpool")
_TOP_KEYS = {
    "name", "description", "task", "dataset", "num_classes", "input_channels", "dtype", "convention",
    "input_size", "width", "stem", "rnnpool", "stages", "last_conv", "final_pool", "dropout", "heads",
}
_CLASSIFIER_KEYS = ("last_conv", "final_pool", "dropout")
_STEM_FIELDS = ("c", "kernel", "stride", "n")
_RNNPOOL_FIELDS = ("patch_size", "stride", "h1", "h2", "padding", "batch_norm")
_STAGE_FIELDS = ("t", "c", "s", "kernel")  # after n
_HEAD_KEYS = {"after", "anchor", "l2norm", "max_out", "extra_conv"}


# ---------------------------------------------------------------------------- value checks


class _Bad(Exception):
    """A value problem; the loader adds the file and the key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(v: Any) -> Choice:
    if not (_is_int(v) and v > 0):
        raise _Bad(f"must be a positive integer, got {v!r}")
    return v


def _nonneg_int(v: Any) -> Choice:
    if not (_is_int(v) and v >= 0):
        raise _Bad(f"must be an integer >= 0, got {v!r}")
    return v


def _pos_number(v: Any) -> Choice:
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
        raise _Bad(f"must be a positive number, got {v!r}")
    return float(v)


def _dropout(v: Any) -> Choice:
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
        raise _Bad(f"must be a number in [0, 1), got {v!r}")
    return float(v)


def _padding(v: Any) -> Choice:
    if not ((_is_int(v) and v >= 0) or v in PADDING_MODES):
        raise _Bad(f"must be an integer >= 0 or one of {', '.join(PADDING_MODES)}, got {v!r}")
    return v


def _bool(v: Any) -> Choice:
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, got {v!r}")
    return v


def _pool_kind(v: Any) -> Choice:
    if v not in POOL_KINDS:
        raise _Bad(f"must be one of {', '.join(POOL_KINDS)}, got {v!r}")
    return v


def _input_size(v: Any) -> Choice:
    """``28`` stays; ``[240, 320]`` / ``"240x320"`` -> ``"240x320"``; ``"480x640x3"`` stays."""
    if _is_int(v):
        if v <= 0:
            raise _Bad(f"must be a positive side, got {v!r}")
        return v
    parts: list[Any]
    if isinstance(v, list):
        parts = v
    elif isinstance(v, str):
        try:
            parts = [int(p) for p in v.lower().split("x")]
        except ValueError:
            parts = []
    else:
        parts = []
    if len(parts) not in (2, 3) or not all(_is_int(p) and p > 0 for p in parts):
        raise _Bad(f"each choice must be a side S, \"HxW\" or \"HxWxC\" (positive integers), got {v!r}")
    return "x".join(str(p) for p in parts)


def _placement_value(v: Any) -> Choice:
    if v is None or v == "none":
        return "none"
    if _is_int(v) and v >= 0:
        return v
    raise _Bad(f"must be none or an integer k >= 0 (replace the first k stages), got {v!r}")


def _input_shape(value: Choice, channels: int) -> tuple[int, int, int]:
    if _is_int(value):
        return value, value, channels
    parts = [int(p) for p in str(value).split("x")]
    return (parts[0], parts[1], channels) if len(parts) == 2 else (parts[0], parts[1], parts[2])


# ---------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Head:
    """A detection head of the space: a :class:`Source` after the stage named ``after``
    (``stem``, ``rnnpool`` or ``stageI``)."""

    after: str
    anchor: int
    l2norm: bool = False
    max_out: bool = False
    extra_conv: dict[str, int] | None = None


class SearchSpace:
    """A validated search space; build with :meth:`load` or :meth:`from_dict`."""

    def __init__(self) -> None:  # filled by from_dict
        self.name = ""
        self.description = ""
        self.source = "<dict>"
        self.task = "classification"
        self.dataset: str | None = None
        self.num_classes = 0
        self.input_channels = 3
        self.dtype: str | None = None
        self.convention: str | None = None
        self.has_stem = False
        self.has_rnnpool = False
        self.num_stages = 0
        self.heads: list[Head] = []
        self._choices: dict[str, tuple[Choice, ...]] = {}
        self._cheap: dict[str, Callable[[Choice], Any]] = {}

    # ------------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path_or_name: str | Path) -> "SearchSpace":
        """Read a space file. A value without ``/`` that does not end in ``.yaml`` names
        ``search_spaces/NAME.yaml`` beside the package, then in the current directory.
        Every problem is a one-line :class:`UserError` naming the file (and the key)."""
        path = find_space(str(path_or_name))
        data = read_yaml(path, "search space")
        return cls.from_dict(data, source=str(path), default_name=path.stem)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", default_name: str = "") -> "SearchSpace":
        """Validate a parsed space (the YAML's mapping or :meth:`to_dict`'s output)."""
        self = cls()
        self.source = source

        def fail(key: str, problem: str) -> UserError:
            return UserError(f"{source}: key {key!r}: {problem}")

        if not isinstance(data, dict):
            raise UserError(f"{source}: a search space must be a mapping of keys ({', '.join(sorted(_TOP_KEYS))})")
        _check_keys(data, _TOP_KEYS, "", fail)
        self.name = str(data.get("name") or default_name or "space")
        self.description = str(data.get("description") or "")
        self.task = data.get("task", "classification")
        if self.task not in TASKS:
            raise fail("task", f"must be one of {', '.join(TASKS)}, got {self.task!r}")
        dataset = data.get("dataset")
        if dataset is not None and not isinstance(dataset, str):
            raise fail("dataset", f"must be a data set name or null, got {dataset!r}")
        self.dataset = dataset
        if "num_classes" not in data:
            raise fail("num_classes", "missing (a positive integer)")
        for key, value in (("num_classes", data["num_classes"]), ("input_channels", data.get("input_channels", 3))):
            if not (_is_int(value) and value > 0):
                raise fail(key, f"must be a positive integer, got {value!r}")
        self.num_classes, self.input_channels = data["num_classes"], data.get("input_channels", 3)
        if data.get("dtype") is not None and data["dtype"] not in DTYPE_BYTES:
            raise fail("dtype", f"must be one of {', '.join(DTYPE_BYTES)}, got {data['dtype']!r}")
        if data.get("convention") is not None and data["convention"] not in CONVENTIONS:
            raise fail("convention", f"must be one of {', '.join(CONVENTIONS)}, got {data['convention']!r}")
        self.dtype, self.convention = data.get("dtype"), data.get("convention")

        def tunable(name: str, raw: Any, check: Callable[[Any], Choice],
                    cheap: Callable[[Choice], Any] | None = None) -> None:
            values = raw if isinstance(raw, list) else [raw]
            if not values:
                raise fail(name, "empty list of choices")
            if isinstance(raw, dict):
                raise fail(name, f"must be a value or a list of choices, got a mapping {raw!r}")
            out: list[Choice] = []
            for v in values:
                try:
                    c = check(v)
                except _Bad as exc:
                    raise fail(name, str(exc)) from None
                if c in out and type(c) is type(out[out.index(c)]):
                    raise fail(name, f"duplicate choice {v!r}")
                out.append(c)
            self._choices[name] = tuple(out)
            self._cheap[name] = cheap or (lambda c: c)

        def first_listed(name: str) -> Callable[[Choice], Any]:
            return lambda c: self._choices[name].index(c)

        def larger(c: Choice) -> Any:
            return -c

        if "input_size" not in data:
            raise fail("input_size", "missing (a side, \"HxW\" or \"HxWxC\", or a list of them)")
        tunable("input_size", data["input_size"], _input_size,
                lambda c: math.prod(_input_shape(c, self.input_channels)))
        tunable("width", data.get("width", 1.0), _pos_number)

        # stem
        stem = data.get("stem")
        self.has_stem = stem is not None
        if stem is not None:
            if not isinstance(stem, dict):
                raise fail("stem", f"must be a mapping ({', '.join(_STEM_FIELDS)}) or null, got {stem!r}")
            _check_keys(stem, set(_STEM_FIELDS), "stem.", fail)
            if "c" not in stem:
                raise fail("stem.c", "missing (the stem's output channels)")
            tunable("stem.c", stem["c"], _pos_int)
            tunable("stem.kernel", stem.get("kernel", 3), _pos_int)
            tunable("stem.stride", stem.get("stride", 2), _pos_int, larger)
            tunable("stem.n", stem.get("n", 1), _pos_int)

        # stages
        stages = data.get("stages")
        if not isinstance(stages, list) or not stages:
            raise fail("stages", "must be a non-empty list of {t, c, n, s, kernel} mappings")
        self.num_stages = len(stages)
        for i, st in enumerate(stages, 1):
            prefix = f"stage{i}"
            if not isinstance(st, dict):
                raise fail(prefix, f"must be a mapping of t, c, n, s, kernel, got {st!r}")
            _check_keys(st, {"t", "c", "n", "s", "kernel"}, f"{prefix}.", fail)
            for key in ("t", "c"):
                if key not in st:
                    raise fail(f"{prefix}.{key}", "missing")
            tunable(f"{prefix}.n", st.get("n", 1), _nonneg_int)
            tunable(f"{prefix}.t", st["t"], _pos_int)
            tunable(f"{prefix}.c", st["c"], _pos_int)
            tunable(f"{prefix}.s", st.get("s", 1), _pos_int, larger)
            tunable(f"{prefix}.kernel", st.get("kernel", 3), _pos_int)

        # rnnpool
        rp = data.get("rnnpool")
        self.has_rnnpool = rp is not None
        if rp is None:
            self._choices["rnnpool.placement"] = ("none",)
            self._cheap["rnnpool.placement"] = lambda c: 0
        else:
            if not isinstance(rp, dict):
                raise fail("rnnpool", f"must be a mapping (placement, {', '.join(_RNNPOOL_FIELDS)}), got {rp!r}")
            _check_keys(rp, {"placement", *_RNNPOOL_FIELDS}, "rnnpool.", fail)
            if "placement" not in rp:
                raise fail("rnnpool.placement", "missing (none, or k: replace the first k stages)")
            tunable("rnnpool.placement", rp["placement"], _placement_value, first_listed("rnnpool.placement"))
            for k in self._choices["rnnpool.placement"]:
                if k != "none" and k > self.num_stages:
                    raise fail("rnnpool.placement", f"{k} is larger than the number of stages ({self.num_stages})")
            if any(k != "none" for k in self._choices["rnnpool.placement"]):
                for key in ("patch_size", "stride", "h1", "h2"):
                    if key not in rp:
                        raise fail(f"rnnpool.{key}", "missing (needed when the placement is not none)")
            tunable("rnnpool.patch_size", rp.get("patch_size", 4), _pos_int)
            tunable("rnnpool.stride", rp.get("stride", 4), _pos_int, larger)
            tunable("rnnpool.h1", rp.get("h1", 8), _pos_int)
            tunable("rnnpool.h2", rp.get("h2", 8), _pos_int)
            tunable("rnnpool.padding", rp.get("padding", "reference"), _padding, first_listed("rnnpool.padding"))
            tunable("rnnpool.batch_norm", rp.get("batch_norm", True), _bool, first_listed("rnnpool.batch_norm"))

        # tail
        if self.task == "classification":
            if "heads" in data:
                raise fail("heads", "only for task: detection")
            tunable("last_conv", data.get("last_conv", 0), _nonneg_int)
            tunable("final_pool", data.get("final_pool", "avg"), _pool_kind, POOL_KINDS.index)
            tunable("dropout", data.get("dropout", 0.0), _dropout, first_listed("dropout"))
        else:
            for key in _CLASSIFIER_KEYS:
                if key in data:
                    raise fail(key, "only for task: classification")
            self.heads = self._parse_heads(data.get("heads"), fail)
        return self

    def _parse_heads(self, raw: Any, fail: Callable[[str, str], UserError]) -> list[Head]:
        if not isinstance(raw, list) or not raw:
            raise fail("heads", "task: detection needs a non-empty list of {after, anchor, ...} heads")
        places = (["stem"] if self.has_stem else []) + (["rnnpool"] if self.has_rnnpool else [])
        places += [f"stage{i}" for i in range(1, self.num_stages + 1)]
        heads = []
        for j, h in enumerate(raw, 1):
            key = f"heads[{j}]"
            if not isinstance(h, dict):
                raise fail(key, f"must be a mapping ({', '.join(sorted(_HEAD_KEYS))}), got {h!r}")
            _check_keys(h, _HEAD_KEYS, f"{key}.", fail)
            if h.get("after") not in places:
                raise fail(f"{key}.after", f"must be one of {', '.join(places)}, got {h.get('after')!r}")
            if not (_is_int(h.get("anchor")) and h["anchor"] > 0):
                raise fail(f"{key}.anchor", f"must be a positive integer (pixels), got {h.get('anchor')!r}")
            for flag in ("l2norm", "max_out"):
                if not isinstance(h.get(flag, False), bool):
                    raise fail(f"{key}.{flag}", f"must be true or false, got {h[flag]!r}")
            ec = h.get("extra_conv")
            if ec is not None:
                if not isinstance(ec, dict) or "c" not in ec:
                    raise fail(f"{key}.extra_conv", f"must be a mapping {{c, kernel, stride}}, got {ec!r}")
                _check_keys(ec, {"c", "kernel", "stride"}, f"{key}.extra_conv.", fail)
                for name, value in ec.items():
                    if not (_is_int(value) and value > 0):
                        raise fail(f"{key}.extra_conv.{name}", f"must be a positive integer, got {value!r}")
                ec = dict(ec)
            heads.append(Head(h["after"], h["anchor"], h.get("l2norm", False), h.get("max_out", False), ec))
        return heads

    # ------------------------------------------------------------------------ parameters

    def _walk(self, get: Callable[[str], Choice]) -> dict[str, Choice]:
        """Every active value (fixed ones included) in a fixed order, asking ``get`` for each;
        what is active depends only on values already asked (placement, a stage's ``n``)."""
        values: dict[str, Choice] = {}

        def take(name: str) -> Choice:
            values[name] = get(name)
            return values[name]

        take("input_size")
        take("width")
        if self.has_stem:
            for f in _STEM_FIELDS:
                take(f"stem.{f}")
        placement = take("rnnpool.placement")
        if placement != "none":
            for f in _RNNPOOL_FIELDS:
                take(f"rnnpool.{f}")
        for i in range(1, self.num_stages + 1):
            if placement != "none" and i <= placement:
                continue
            if take(f"stage{i}.n") == 0:
                continue
            for f in _STAGE_FIELDS:
                take(f"stage{i}.{f}")
        if self.task == "classification":
            for key in _CLASSIFIER_KEYS:
                take(key)
        return values

    def _tunable(self, name: str) -> bool:
        return len(self._choices[name]) > 1

    def param_names(self) -> list[str]:
        """Names of every parameter a trial may be asked for (two or more choices and active
        in at least one configuration), in suggestion order."""
        placements = self._choices["rnnpool.placement"]
        names = [n for n in ("input_size", "width") if self._tunable(n)]
        if self.has_stem:
            names += [f"stem.{f}" for f in _STEM_FIELDS if self._tunable(f"stem.{f}")]
        if self._tunable("rnnpool.placement"):
            names.append("rnnpool.placement")
        if any(p != "none" for p in placements):
            names += [f"rnnpool.{f}" for f in _RNNPOOL_FIELDS if self._tunable(f"rnnpool.{f}")]
        for i in range(1, self.num_stages + 1):
            if not any(p == "none" or i > p for p in placements):
                continue
            stage = [f"stage{i}.n"]
            if any(n > 0 for n in self._choices[f"stage{i}.n"]):
                stage += [f"stage{i}.{f}" for f in _STAGE_FIELDS]
            names += [n for n in stage if self._tunable(n)]
        if self.task == "classification":
            names += [n for n in _CLASSIFIER_KEYS if self._tunable(n)]
        return names

    def param_choices(self) -> dict[str, list[Choice]]:
        """``{name: choices}`` for :meth:`param_names`."""
        return {name: list(self._choices[name]) for name in self.param_names()}

    def suggest(self, trial: Any) -> dict[str, Choice]:
        """Ask ``trial`` (an ``optuna.Trial``) for every active parameter with
        ``suggest_categorical``; returns ``{name: value}`` for the asked ones. Never fails on
        a combination: that is :meth:`build`'s job."""

        def get(name: str) -> Choice:
            choices = self._choices[name]
            return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))

        values = self._walk(get)
        return {k: v for k, v in values.items() if self._tunable(k)}

    def sample(self, trial: Any) -> ArchSpec:
        """:meth:`suggest` then :meth:`build` (which may raise :class:`SpecError`)."""
        return self.build(self.suggest(trial))

    def random_params(self, rng: random.Random) -> dict[str, Choice]:
        """A uniformly random choice for each active parameter (conditionals respected)."""
        values = self._walk(lambda name: rng.choice(self._choices[name]))
        return {k: v for k, v in values.items() if self._tunable(k)}

    def _resolve(self, params: dict[str, Any]) -> dict[str, Choice]:
        unknown = sorted(set(params) - set(self._choices))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(self._choices), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"search space {self.name}: unknown parameter {unknown[0]!r}{hint}")

        def get(name: str) -> Choice:
            choices = self._choices[name]
            if name not in params:
                if len(choices) == 1:
                    return choices[0]
                raise UserError(f"search space {self.name}: parameter {name!r} missing (one of {list(choices)})")
            value = params[name]
            for c in choices:
                if c == value and isinstance(c, bool) == isinstance(value, bool) and (
                        isinstance(c, str) == isinstance(value, str)):
                    return c
            raise UserError(f"search space {self.name}: parameter {name!r} = {value!r} is not one of {list(choices)}")

        return self._walk(get)

    def active(self, params: dict[str, Any]) -> dict[str, Choice]:
        """The parameters of ``params`` that a trial with these values would be asked for, as
        the space's choice objects (so two dicts naming the same candidate compare equal).
        Raises the same :class:`UserError` as :meth:`build`."""
        return {k: v for k, v in self._resolve(params).items() if self._tunable(k)}

    def build(self, params: dict[str, Any]) -> ArchSpec:
        """The network for ``params`` (``{name: value}``; fixed values and inactive conditional
        parameters may be left out; inactive ones given are ignored). Deterministic. Raises
        :class:`SpecError` when the combination is not a valid network (an infeasible trial)
        and a plain :class:`UserError` for an unknown parameter or a value outside its
        choices."""
        v = self._resolve(params)
        width = v["width"]
        stages: list[Stage] = []
        where: dict[str, int] = {}
        if self.has_stem:
            stages.append(Conv(c=v["stem.c"], kernel=v["stem.kernel"], stride=v["stem.stride"], n=v["stem.n"]))
            where["stem"] = 0
        placement = v["rnnpool.placement"]
        if placement != "none":
            stages.append(RNNPool(patch_size=v["rnnpool.patch_size"], stride=v["rnnpool.stride"],
                                  h1=v["rnnpool.h1"], h2=v["rnnpool.h2"], padding=v["rnnpool.padding"],
                                  batch_norm=v["rnnpool.batch_norm"]))
            where["rnnpool"] = len(stages) - 1
        for i in range(1, self.num_stages + 1):
            if f"stage{i}.t" not in v:  # replaced by the RNNPool or n = 0
                continue
            stages.append(Bottleneck(t=v[f"stage{i}.t"], c=scale_channels(v[f"stage{i}.c"], width), n=v[f"stage{i}.n"],
                                     s=v[f"stage{i}.s"], kernel=v[f"stage{i}.kernel"]))
            where[f"stage{i}"] = len(stages) - 1
        if not stages:
            raise SpecError(f"search space {self.name}: no stem, no RNNPool and every stage omitted")
        detection = None
        if self.task == "classification":
            if v["last_conv"]:
                stages.append(Conv(c=v["last_conv"], kernel=1))
            stages += [Pool(kind=v["final_pool"]), Linear(dropout=v["dropout"])]
        else:
            sources = [Source(stage=where[h.after], anchor=h.anchor, l2norm=h.l2norm, max_out=h.max_out,
                              extra_conv=None if h.extra_conv is None else dict(h.extra_conv))
                       for h in self.heads if h.after in where]
            if not sources:
                raise SpecError(f"search space {self.name}: every detection head follows an omitted stage")
            detection = Detection(sources)
        spec = ArchSpec(_input_shape(v["input_size"], self.input_channels), self.num_classes, stages, detection,
                        name=self.name)
        spec.validate()
        return spec

    def size(self) -> int:
        """How many distinct parameter dicts the space holds (conditionals respected)."""

        def count(name: str) -> int:
            return len(self._choices[name])

        head = count("input_size") * count("width")
        if self.has_stem:
            head *= math.prod(count(f"stem.{f}") for f in _STEM_FIELDS)
        tail = math.prod(count(k) for k in _CLASSIFIER_KEYS) if self.task == "classification" else 1
        total = 0
        for p in self._choices["rnnpool.placement"]:
            n = 1 if p == "none" else math.prod(count(f"rnnpool.{f}") for f in _RNNPOOL_FIELDS)
            for i in range(1, self.num_stages + 1):
                if p != "none" and i <= p:
                    continue
                rest = math.prod(count(f"stage{i}.{f}") for f in _STAGE_FIELDS)
                n *= sum(1 if k == 0 else rest for k in self._choices[f"stage{i}.n"])
            total += n
        return head * total * tail

    # ------------------------------------------------------------------------ feasibility

    def corners(self) -> list[dict[str, Choice]]:
        """A few parameter dicts at the cheap end of every dimension (smallest input, width,
        channels, expansion, depth, hidden sizes, patch; largest strides; average pooling):
        one per placement choice and stem stride, so a caller can check a budget is reachable
        before it starts. Deduplicated, in a fixed order."""
        out: list[dict[str, Choice]] = []
        placements = self._choices["rnnpool.placement"]
        strides = sorted(self._choices.get("stem.stride", (None,)), key=lambda s: 0 if s is None else -s)
        for placement in placements:
            for stride in strides:
                fixed = {"rnnpool.placement": placement, "stem.stride": stride}

                def get(name: str) -> Choice:
                    if name in fixed:
                        return fixed[name]
                    return min(self._choices[name], key=self._cheap[name])

                params = {k: v for k, v in self._walk(get).items() if self._tunable(k)}
                if params not in out:
                    out.append(params)
        return out

    def cheapest(self, budget: Budget | None = None, samples: int = 300, seed: int = 0) -> tuple[dict[str, Choice], Costs]:
        """The candidate with the smallest peak RAM among :meth:`corners` and ``samples``
        seeded random parameter dicts (ties: fewer MAdds), scored with
        ``evaluate(spec, budget.dtype, budget.convention, profile=False)`` (int8/standard
        without a budget). When ``budget`` has ``violations``, a candidate that meets the whole
        budget is preferred: the result violates the budget only if every candidate tried
        does (then it is the smallest peak RAM overall, what "the smallest RAM reachable in
        this space" reports). A :class:`UserError` when none of them builds."""
        if budget is None:
            budget = Budget(dtype=self.dtype or "int8", convention=self.convention or "standard")
        rng = random.Random(seed)
        candidates = self.corners() + [self.random_params(rng) for _ in range(samples)]
        best: tuple[tuple[bool, int, int], dict[str, Choice], Costs] | None = None
        first_error: SpecError | None = None
        for params in candidates:
            try:
                costs = budget.costs(self.build(params))
            except SpecError as exc:
                first_error = first_error or exc
                continue
            misses = not budget.fits(costs)
            key = (misses, costs.peak_ram_bytes, costs.madds)
            if best is None or key < best[0]:
                best = (key, params, costs)
        if best is None:
            raise UserError(f"search space {self.name}: none of {len(candidates)} candidates builds ({first_error})")
        return best[1], best[2]

    def spread(self, budget: Any, k: int, samples: int = 2000, seed: int = 0) -> list[dict[str, Choice]]:
        """Up to ``k`` distinct networks that meet ``budget``, spread over its RAM range: the
        feasible ones among ``samples`` seeded random draws (and :meth:`corners`) are split into
        ``k`` bins of equal width in peak RAM, and each bin gives its candidate with the most
        MAdds (more computation: the likeliest to be accurate at that RAM). The search enqueues
        them as its first trials, so the sampler starts from the front's whole width instead of
        from random points, a third of which are over budget."""
        if k < 1:
            return []
        rng = random.Random(seed)
        seen: set[str] = set()
        feasible: list[tuple[int, int, dict[str, Choice]]] = []
        for params in self.corners() + [self.random_params(rng) for _ in range(samples)]:
            try:
                spec = self.build(params)
            except SpecError:
                continue
            key = spec.network_key()
            if key in seen:  # a repeat network: cost it once (the first draw of it is kept)
                continue
            seen.add(key)
            try:
                costs = budget.costs(spec)
            except SpecError:
                continue
            if budget.fits(costs):
                feasible.append((costs.peak_ram_bytes, costs.madds, params))
        if not feasible:
            return []
        rams = [ram for ram, _, _ in feasible]
        low, high = min(rams), max(rams)
        width = max(1, high - low) / k
        best: dict[int, tuple[int, dict[str, Choice]]] = {}
        for ram, madds, params in feasible:
            b = min(k - 1, int((ram - low) / width))
            if b not in best or madds > best[b][0]:
                best[b] = (madds, params)
        return [params for _, (_, params) in sorted(best.items())]

    # ------------------------------------------------------------------------ output

    def to_dict(self) -> dict[str, Any]:
        """The normalized space as plain data (``from_dict`` reads it back): fixed values as
        scalars, choices as lists."""

        def val(name: str) -> Any:
            choices = self._choices[name]
            return choices[0] if len(choices) == 1 else list(choices)

        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "task": self.task, "dataset": self.dataset,
            "num_classes": self.num_classes, "input_channels": self.input_channels,
        }
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.convention is not None:
            out["convention"] = self.convention
        out["input_size"] = val("input_size")
        out["width"] = val("width")
        out["stem"] = {f: val(f"stem.{f}") for f in _STEM_FIELDS} if self.has_stem else None
        if self.has_rnnpool:
            out["rnnpool"] = {"placement": val("rnnpool.placement"),
                              **{f: val(f"rnnpool.{f}") for f in _RNNPOOL_FIELDS}}
        out["stages"] = [{f: val(f"stage{i}.{f}") for f in ("t", "c", "n", "s", "kernel")}
                         for i in range(1, self.num_stages + 1)]
        if self.task == "classification":
            out.update({k: val(k) for k in _CLASSIFIER_KEYS})
        else:
            out["heads"] = [{"after": h.after, "anchor": h.anchor, "l2norm": h.l2norm, "max_out": h.max_out,
                             "extra_conv": h.extra_conv} for h in self.heads]
        return out

    def summary(self) -> str:
        """One line: name, task, input choices, classes, tunables and size."""
        inputs = ", ".join(str(c) for c in self._choices["input_size"])
        return (f"{self.name}: {self.task}, input {inputs} (x{self.input_channels} channels unless given), "
                f"{self.num_classes} classes, {len(self.param_names())} tunables, {self.size():,} candidates")

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, source={self.source!r})"


def _check_keys(data: dict, allowed: Iterable[str], prefix: str, fail: Callable[[str, str], UserError]) -> None:
    allowed = set(allowed)
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(sorted(allowed))})"
        raise fail(f"{prefix}{unknown[0]}", f"unknown key{hint}")


def list_spaces() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/``."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def find_space(name: str) -> Path:
    """The file a ``--space`` value names: a value with a ``/`` or ending in ``.yaml``/``.yml``
    is a path; a bare ``NAME`` is ``search_spaces/NAME.yaml`` beside the package, then in the
    current directory. A :class:`UserError` listing the known spaces otherwise."""
    if "/" in name or name.endswith((".yaml", ".yml")):
        return Path(name)
    for candidate in (SPACES_DIR / f"{name}.yaml", Path.cwd() / "search_spaces" / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = list_spaces()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UserError(f"unknown search space {name!r} ({hint}known: {', '.join(known) or 'none'}; "
                    "or give a path to a .yaml file)")


__all__ = ["Head", "SPACES_DIR", "SearchSpace", "find_space", "list_spaces"]
