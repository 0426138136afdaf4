"""Device budgets: sizes, MAdds and latencies as users write them, and device profiles.

A :class:`Budget` is what a candidate must fit: peak RAM, flash (the deployed model), MAdds and
latency, each optional, plus the element type and RAM convention the costs are computed with.
It comes from a device profile (``constraints/NAME.yaml``) with command-line flags on top
(:func:`resolve_budget`). Torch-free and Optuna-free.

Units. Sizes are bytes; ``KB`` and ``KiB`` both mean 1024 bytes and ``MB``/``MiB`` 2**20 (the
RNNPool paper's KB/MB are KiB/MiB, and so are microcontroller datasheets'). MAdds use decimal
prefixes (``60M`` = 60,000,000). Latencies are seconds.

Profile format (every field optional; sizes/MAdds/latency as the parsers below accept them)::

    name: cortex-m4-256k     # default: the file's stem
    ram: 256KiB              # peak activation RAM
    flash: 1MiB              # deployed model bytes
    madds: 128M
    latency: 1s
    dtype: int8              # int8 | float32
    convention: standard     # standard | optimal | runtime (see rnnpool_nas.cost.ram)
    clock_mhz: 168

Every problem (a bad value, a missing file, broken YAML, an unknown field) is a one-line
:class:`UserError` naming the value, the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..cost import CONVENTIONS, DTYPE_BYTES, Costs, evaluate
from ..errors import UserError
from ..resources import builtin_dir
from ..units import DEFAULT_CLOCK_MHZ, KIB, MIB, format_bytes, format_latency, format_madds
from ._yaml import read_yaml

#: Where named profiles live: the checkout's ``constraints/``, or its copy inside an installed package.
CONSTRAINTS_DIR = builtin_dir("constraints")

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?"
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z]*)\s*$")
_BYTE_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB,
               "g": 2**30, "gb": 2**30, "gib": 2**30}
_MADDS_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_TIME_RE = re.compile(rf"^\s*{_NUMBER}\s*(s|ms|us|µs|)\s*$", re.IGNORECASE)

BYTES_FORMS = "bytes (262144) or a number with B, KB/KiB, MB/MiB, GB/GiB (256KB, 0.25MiB; K = 1024)"
MADDS_FORMS = "a count (60000000) or a number with k, M or G (500k, 60M, 1.5G)"
LATENCY_FORMS = "seconds (1, 1.5s) or a number with s, ms or us (800ms, 250us)"
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*(s|m|min|h|)\s*$", re.IGNORECASE)
DURATION_FORMS = "seconds (900, 900s) or a number with s, m/min or h (20min, 20m, 1.5h)"


def _split(text: Any, pattern: re.Pattern[str]) -> tuple[float, str] | None:
    """``(number, lower-case unit)`` of ``text``, or ``None`` when it does not parse."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        try:
            return float(text), ""
        except OverflowError:  # an int beyond a float's range
            return math.inf, ""
    if not isinstance(text, str):
        return None
    m = pattern.match(text)
    if m is None:
        return None
    mantissa, exponent, unit = m.groups()
    try:
        value = float(mantissa + (f"e{exponent}" if exponent else ""))
    except (ValueError, OverflowError):
        return None
    return value, unit.lower()


def _bad(what: str, kind: str, text: Any, forms: str) -> UserError:
    return UserError(f"{what}: bad {kind} {text!r}: use {forms}")


def _parse_count(text: Any, units: dict[str, float], what: str, kind: str, forms: str) -> int:
    """A positive whole count: a number with one of ``units``' suffixes, rounded."""
    parsed = _split(text, _SIZE_RE)
    if parsed is None or parsed[1] not in units:
        raise _bad(what, kind, text, forms)
    value = parsed[0] * units[parsed[1]]
    if not math.isfinite(value) or round(value) <= 0:
        raise _bad(what, kind, text, "a positive, finite " + forms)
    return int(round(value))


def parse_bytes(text: str | int, what: str = "size") -> int:
    """A positive size in bytes from ``262144``, ``"512B"``, ``"256KB"``, ``"256KiB"``,
    ``"256 kb"``, ``"0.25MB"``, ``"1MiB"``, ``"1GB"``. ``K``/``KB``/``KiB`` are 1024 bytes and
    ``M``/``MB``/``MiB`` 2**20 (the paper's KB are KiB); fractions round to the nearest byte.
    Zero, negative, non-finite or unparsable values raise a one-line :class:`UserError` that
    starts with ``what`` and lists the accepted forms."""
    return _parse_count(text, _BYTE_UNITS, what, "size", BYTES_FORMS)


def parse_madds(text: str | int, what: str = "MAdds") -> int:
    """A positive multiply-add count from ``60000000``, ``"500k"``, ``"60M"``, ``"60m"``,
    ``"1.5G"`` (decimal prefixes, case-insensitive: ``m`` is mega here). One-line
    :class:`UserError` otherwise."""
    return _parse_count(text, _MADDS_UNITS, what, "MAdds count", MADDS_FORMS)


def parse_latency(text: str | float, what: str = "latency") -> float:
    """A positive latency in seconds from ``1``, ``"1s"``, ``"1.5s"``, ``"800ms"``,
    ``"250us"``. One-line :class:`UserError` otherwise."""
    return _parse_seconds(text, _TIME_RE, _TIME_UNITS, what, "latency", LATENCY_FORMS)


def parse_duration(text: str | float, what: str = "time") -> float:
    """A positive wall-clock duration in seconds from ``900``, ``"900s"``, ``"20min"``,
    ``"20m"``, ``"1.5h"`` (``m`` is minutes here). One-line :class:`UserError` otherwise."""
    return _parse_seconds(text, _DURATION_RE, _DURATION_UNITS, what, "duration", DURATION_FORMS)


def _parse_seconds(text: Any, pattern: re.Pattern[str], units: dict[str, float], what: str, kind: str,
                   forms: str) -> float:
    parsed = _split(text, pattern)
    if parsed is None or parsed[1] not in units:
        raise _bad(what, kind, text, forms)
    value = parsed[0] * units[parsed[1]]
    if not math.isfinite(value) or value <= 0:
        raise _bad(what, kind, text, "a positive, finite " + forms)
    return value


class CostLike(Protocol):
    """What :meth:`Budget.violations` reads (``rnnpool_nas.cost.Costs`` has it)."""

    peak_ram_bytes: int
    model_bytes: int
    madds: int
    latency_ms: float | None


@dataclass
class Budget:
    """Limits a candidate must meet; ``None`` means unconstrained. ``dtype`` and
    ``convention`` say how costs are computed (``rnnpool_nas.cost.evaluate``); ``clock_mhz``
    is the target's clock for latency estimates; ``name`` the profile's name (or ``""``)."""

    ram_bytes: int | None = None
    flash_bytes: int | None = None
    madds: int | None = None
    latency_s: float | None = None
    dtype: str = "int8"
    convention: str = "standard"
    clock_mhz: float = DEFAULT_CLOCK_MHZ
    name: str = ""

    def costs(self, spec, profile: bool = False) -> Costs:
        """``spec``'s costs as this budget counts them (its dtype, RAM convention and clock): the
        one way the search, the space, export and the report score a candidate against a budget.
        ``profile=True`` adds the per-stage rows. A ``SpecError`` for a spec that cannot build."""
        return evaluate(spec, self.dtype, self.convention, profile=profile, clock_mhz=self.clock_mhz)

    def constraint_names(self) -> list[str]:
        """The active constraints, in the order of :meth:`excess`: a subset of ``ram``,
        ``flash``, ``madds``, ``latency``."""
        limits = (("ram", self.ram_bytes), ("flash", self.flash_bytes), ("madds", self.madds),
                  ("latency", self.latency_s))
        return [name for name, limit in limits if limit is not None]

    def _values(self, costs: CostLike) -> dict[str, tuple[float | None, float]]:
        """Per active constraint: (the candidate's value or ``None`` if unknown, the limit)."""
        latency = None if costs.latency_ms is None else costs.latency_ms / 1e3
        table: dict[str, tuple[float | None, Any]] = {
            "ram": (costs.peak_ram_bytes, self.ram_bytes),
            "flash": (costs.model_bytes, self.flash_bytes),
            "madds": (costs.madds, self.madds),
            "latency": (latency, self.latency_s),
        }
        return {name: table[name] for name in self.constraint_names()}

    def violations(self, costs: CostLike) -> list[str]:
        """Human-readable broken limits, e.g. ``["peak RAM 300.0 KiB > 256.0 KiB"]``; empty
        when ``costs`` fits. An unknown latency (``costs.latency_ms is None``) is not a
        violation."""
        out = []
        for name, (value, limit) in self._values(costs).items():
            if value is None or value <= limit:
                continue
            if name in ("ram", "flash"):
                unit = "MiB" if limit >= MIB else "KiB"  # both sides in the limit's unit
                template = "peak RAM {} > {}" if name == "ram" else "model {} > flash {}"
                out.append(template.format(format_bytes(value, unit), format_bytes(limit, unit)))
            elif name == "madds":
                out.append(f"MAdds {format_madds(value)} > {format_madds(limit)}")
            else:
                out.append(f"latency {format_latency(value)} > {format_latency(limit)}")
        return out

    def excess(self, costs: CostLike) -> list[float]:
        """``value / limit - 1`` per active constraint (order: :meth:`constraint_names`);
        ``<= 0`` means satisfied. This is Optuna's ``constraints_func`` output, so the length
        never depends on ``costs``: an unknown latency counts as ``0.0``."""
        return [0.0 if value is None else value / limit - 1.0 for value, limit in self._values(costs).values()]

    def fits(self, costs: CostLike) -> bool:
        """The feasibility predicate: no violations (an unknown latency is no violation)."""
        return not self.violations(costs)

    def describe(self) -> str:
        """One line: ``"cortex-m4-256k: RAM <= 256.0 KiB, flash <= 1.00 MiB, int8, standard"``."""
        parts = []
        if self.ram_bytes is not None:
            parts.append(f"RAM <= {format_bytes(self.ram_bytes)}")
        if self.flash_bytes is not None:
            parts.append(f"flash <= {format_bytes(self.flash_bytes)}")
        if self.madds is not None:
            parts.append(f"MAdds <= {format_madds(self.madds)}")
        if self.latency_s is not None:
            parts.append(f"latency <= {format_latency(self.latency_s)}")
        parts += [self.dtype, self.convention]
        return f"{self.name or 'budget'}: {', '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (bytes, counts, seconds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Budget":
        """Inverse of :meth:`to_dict`; missing fields take their defaults. Unknown fields or
        bad values are a one-line :class:`UserError`."""
        if not isinstance(data, dict):
            raise UserError(f"budget: must be a mapping, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise UserError(f"budget: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(fields))})")
        kwargs: dict[str, Any] = {}
        for key in ("ram_bytes", "flash_bytes", "madds"):
            value = data.get(key)
            if value is not None:
                if type(value) is not int or value <= 0:
                    raise UserError(f"budget: field {key!r} must be a positive integer or null, got {value!r}")
            kwargs[key] = value
        latency = data.get("latency_s")
        if latency is not None and not _positive_number(latency):
            raise UserError(f"budget: field 'latency_s' must be a positive number or null, got {latency!r}")
        kwargs["latency_s"] = None if latency is None else float(latency)
        kwargs["dtype"] = _check_dtype(data.get("dtype", "int8"), "budget: field 'dtype'")
        kwargs["convention"] = _check_convention(data.get("convention", "standard"), "budget: field 'convention'")
        kwargs["clock_mhz"] = _check_clock(data.get("clock_mhz", DEFAULT_CLOCK_MHZ), "budget: field 'clock_mhz'")
        kwargs["name"] = str(data.get("name", "") or "")
        return cls(**kwargs)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_dtype(value: Any, what: str) -> str:
    if value not in DTYPE_BYTES:
        raise UserError(f"{what}: unknown dtype {value!r} (one of {', '.join(DTYPE_BYTES)})")
    return str(value)


def _check_convention(value: Any, what: str) -> str:
    if value not in CONVENTIONS:
        raise UserError(f"{what}: unknown RAM convention {value!r} (one of {', '.join(CONVENTIONS)})")
    return str(value)


PROFILE_FIELDS = ("name", "ram", "flash", "madds", "latency", "dtype", "convention", "clock_mhz")


def load_constraints(path: str | Path) -> Budget:
    """Read a device profile (format in the module docstring). A missing file, broken YAML,
    an unknown field or a bad value is a one-line :class:`UserError` naming the file (and the
    field)."""
    path = Path(path)
    data = read_yaml(path, "constraints file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a constraints file must be a mapping of fields ({', '.join(PROFILE_FIELDS)})")
    unknown = sorted(str(k) for k in set(data) - set(PROFILE_FIELDS))
    if unknown:
        raise UserError(f"{path}: unknown field {unknown[0]!r} (allowed: {', '.join(PROFILE_FIELDS)})")

    def where(key: str) -> str:
        return f"{path}: field {key!r}"

    budget = Budget(name=str(data.get("name") or path.stem))
    return _override(budget, {key: data.get(key) for key in PROFILE_FIELDS if key != "name"}, where)


def _check_clock(value: Any, what: str) -> float:
    if not _positive_number(value):
        raise UserError(f"{what}: must be a positive number (MHz), got {value!r}")
    return float(value)


def _override(budget: Budget, values: dict[str, Any], label) -> Budget:
    """Set each field of ``budget`` whose value in ``values`` (keys ``ram``, ``flash``, ``madds``,
    ``latency``, ``dtype``, ``convention``, ``clock_mhz``, as users write them) is not ``None``;
    ``label(key)`` names the value in a one-line error. The one place a user's budget fields are
    parsed and set (``Budget.from_dict`` reads a run's config.json back)."""
    parsers = {"ram": ("ram_bytes", parse_bytes), "flash": ("flash_bytes", parse_bytes), "madds": ("madds", parse_madds),
               "latency": ("latency_s", parse_latency), "dtype": ("dtype", _check_dtype),
               "convention": ("convention", _check_convention), "clock_mhz": ("clock_mhz", _check_clock)}
    for key, value in values.items():
        if value is not None:
            field, parse = parsers[key]
            setattr(budget, field, parse(value, label(key)))
    return budget


def list_profiles() -> list[str]:
    """Names of the profiles shipped in ``constraints/``."""
    return sorted(p.stem for p in CONSTRAINTS_DIR.glob("*.yaml"))


def find_constraints(name: str) -> Path:
    """The file a ``--constraints`` value names. A value with a ``/`` or ending in ``.yaml``
    (or ``.yml``) is a path; a bare ``NAME`` is ``constraints/NAME.yaml`` beside the package,
    then in the current directory (a path in the current directory as a last resort). A
    :class:`UserError` listing the known profiles otherwise."""
    if "/" in name or name.endswith((".yaml", ".yml")):
        return Path(name)
    candidates = [CONSTRAINTS_DIR / f"{name}.yaml", Path.cwd() / "constraints" / f"{name}.yaml", Path(name)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = list_profiles()
    raise UserError(f"unknown constraints profile {name!r} (known: {', '.join(known) or 'none'}; "
                    "or give a path to a .yaml file)")


def resolve_budget(
    constraints: str | None = None,
    ram: str | int | None = None,
    flash: str | int | None = None,
    madds: str | int | None = None,
    latency: str | float | None = None,
    dtype: str | None = None,
    convention: str | None = None,
) -> Budget:
    """The budget a search runs under: the profile ``constraints`` (a name or a path, see
    :func:`find_constraints`; ``None`` for none), then every flag that is not ``None``
    overrides its field (values as the parsers accept them)."""
    budget = load_constraints(find_constraints(constraints)) if constraints else Budget()
    labels = {"ram": "RAM budget", "flash": "flash budget", "madds": "MAdds budget", "latency": "latency budget",
              "dtype": "dtype", "convention": "convention"}
    return _override(budget, dict(ram=ram, flash=flash, madds=madds, latency=latency, dtype=dtype,
                                  convention=convention), labels.__getitem__)


__all__ = [
    "Budget", "CONSTRAINTS_DIR", "KIB", "MIB", "find_constraints", "format_bytes", "list_profiles", "load_constraints",
    "parse_bytes", "parse_duration", "parse_latency", "parse_madds", "resolve_budget",
]
