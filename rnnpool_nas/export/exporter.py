"""``export``: a trained architecture -> a self-contained C99 project (see ``rnnpool-nas export``).

    DIR/
      model.h, model.c          the network as kernel calls, weights in const arrays (codegen.py)
      runtime/                  the kernels (one C file per family), copied from the package
      main_host.c               host driver: IN.bin -> OUT.bin, or --print
      main_m4.c, startup_m4.c, semihost.h, mps2_an386.ld, sample_input.h   the Cortex-M4 image
      Makefile                  host, check, asan, m4, size, run-qemu, run-host
      sample_input.bin, expected_output.bin     one validation image and the int8 reference output
      val_input.bin, val_expected.bin           a batch of validation images and their outputs
      export.json               spec, scales, arena and flash bytes, predicted vs measured RAM,
                                float and int8 accuracy

The model is quantized exactly as ``rnnpool-nas train`` scores it (same calibration images), and
the expected outputs come from the Python int8 reference, so ``make check`` proves the C is
bit-exact. With the toolchains installed, export also builds and runs the host binary, the
Cortex-M4 image (and QEMU), and records the ELF's sizes and the measured stack.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arch.spec import ArchSpec, load_spec
from ..cost import evaluate
from ..errors import UserError
from . import runtime_files
from .codegen import c_array, generate

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Source:
    """What to export: a spec, its checkpoint, the data it was trained on, the budget it met."""

    # dataset/data_dir/limit/seed repeat SearchConfig's fields on purpose: a Source is read back
    # from a run's config.json (from_run) or given by hand (from_files), with the same meaning.

    spec: ArchSpec
    checkpoint: Path
    dataset: str
    data_dir: str | None = None
    limit: int | None = None
    seed: int = 0
    budget: Any = None  # run.budget.Budget of the run, if any
    label: str = ""
    #: a finalized trial trained with ``finalize --limit``: calibrate on those training rows
    train_limit: int | None = None


def from_run(run_dir: str | Path, trial: int) -> Source:
    """The trial ``trial`` of the search run ``run_dir`` (read through the run directory): its
    finalized checkpoint (``RUN/final/NNNN/``, from ``rnnpool-nas finalize``) when there is one,
    else the search's proxy checkpoint."""
    from ..run.final import finalized_checkpoint, read_final
    from ..run.budget import Budget
    from ..run.store import RunStore, trial_path

    store = RunStore.open(run_dir)
    row = store.rows.get(int(trial))
    if row is None:
        known = sorted(n for n, r in store.rows.items() if r.get("status") == "complete")
        raise UserError(f"{run_dir} has no trial {trial} (complete trials: {', '.join(map(str, known)) or 'none'})")
    if row.get("status") not in ("complete", "stopped"):
        raise UserError(f"trial {trial} of {run_dir} was never trained (status {row.get('status')}); "
                        "only complete trials have a model to export")
    trial_dir = trial_path(run_dir, trial)
    spec = load_spec(trial_dir / "arch.json")
    cfg = store.config
    budget = Budget.from_dict(cfg["budget"]) if cfg.get("budget") else None
    final = finalized_checkpoint(run_dir, int(trial))
    if final is not None:  # `rnnpool-nas finalize` retrained it: ship that, scored on the whole test set
        recipe = (read_final(run_dir, int(trial)) or {}).get("recipe") or {}
        return Source(spec, final, cfg.get("dataset") or "fashion-mnist", cfg.get("data_dir"), None,
                      int(cfg.get("seed") or 0), budget, f"{Path(run_dir).name} trial {trial} (finalized)",
                      train_limit=recipe.get("limit"))
    return Source(spec, trial_dir / "checkpoint.pt", cfg.get("dataset") or "fashion-mnist", cfg.get("data_dir"),
                  cfg.get("limit"), int(cfg.get("seed") or 0), budget, f"{Path(run_dir).name} trial {trial}")


def from_files(checkpoint: str | Path, arch: str | Path, dataset: str | None = None,
               data_dir: str | None = None) -> Source:
    """A model trained with ``rnnpool-nas train``: its ``checkpoint.pt`` and ``arch.json`` (the
    data set comes from the ``metrics.json`` beside the checkpoint unless given)."""
    spec = load_spec(arch)
    checkpoint = Path(checkpoint)
    if dataset is None:
        try:
            dataset = json.loads((checkpoint.parent / "metrics.json").read_text())["dataset"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"no --dataset given and no metrics.json naming one beside {checkpoint}") from None
    return Source(spec, checkpoint, dataset, data_dir, label=str(checkpoint))


def load_model(source: Source):
    """``source``'s network with its checkpoint's weights, in eval mode; ``UserError`` when the
    checkpoint does not match the architecture or the network cannot fit memory."""
    from ..arch.build import build
    from ..cost.memory import check_fits_memory
    from ..train.checkpoint import load_checkpoint

    path = source.checkpoint
    state = load_checkpoint(path)  # weights only: a checkpoint holding other objects is refused unread
    weights = state["model"] if "model" in state else state
    check_fits_memory(source.spec)
    model = build(source.spec)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserError(f"checkpoint {path} does not match its architecture ({str(exc).splitlines()[0][:120]})") from None
    return model.eval()


def export(source: Source, out: str | Path, *, force: bool = False, val_images: int = 256, build: bool = True,
           log=print) -> dict[str, Any]:
    """Write the C project for ``source`` into ``out``; returns what ``export.json`` holds."""
    from ..run.final import train_rows
    from ..run.store import check_writable_folder
    from ..train.recipe import load_data, score_int8

    out = Path(out)
    spec = source.spec
    if source.budget is not None:
        violations = source.budget.violations(source.budget.costs(spec))
        if violations and not force:
            raise UserError(f"{source.label} breaks the run's budget ({'; '.join(violations)}); pass --force to export anyway")
        over = _arena_over_budget(spec, source.budget)
        if over and not force:
            raise UserError(f"{source.label}: {over}; pass --force to export anyway")
        if over:
            log(f"warning: {source.label}: {over}")
    check_writable_folder(out)
    if out.exists() and any(out.iterdir()) and not (out / "export.json").exists():
        raise UserError(f"{out} exists and is not an earlier export; choose an empty or new --out")
    model = load_model(source)
    dataset = load_data(spec, source.dataset, data_dir=source.data_dir, seed=source.seed, limit=source.limit)
    if spec.detection is None:
        rows = train_rows(len(dataset.x_train), source.train_limit, source.seed)
        if rows is not None:  # the training images a finalized model was calibrated on (finalize --limit)
            dataset.x_train, dataset.y_train = dataset.x_train[rows], dataset.y_train[rows]
    scored = score_int8(model, spec, dataset, seed=source.seed)  # as `rnnpool-nas train` and finalize score it
    qnet, scores = scored.qnet, scored.scores
    val = _sample_images(spec, dataset, max(1, val_images))
    classes = list(dataset.classes)
    # a classifier's data set says whether x_val is its test split (always so here: no holdout)
    split = "test" if getattr(dataset, "val_source", None) == "test" else "validation"
    if spec.detection is not None:
        log(f"{source.label}: float AP {scores['float_ap']:.4f}, int8 AP {scores['int8_ap']:.4f} (IoU 0.5, "
            f"{scores['images']} {split} images)")
    else:
        log(f"{source.label}: float accuracy {scores['float_accuracy']:.4f}, int8 {scores['int8_accuracy']:.4f}, "
            f"top-1 agreement {scores['agreement']:.4f} ({scores['images']} {split} images)")
    dataset_name = dataset.name
    doc = write_project(qnet, spec, out, val, classes)
    doc.update(source=source.label, dataset=dataset_name, accuracy=scores)
    if build:
        doc["build"] = build_and_measure(out, log)
    (out / "export.json").write_text(json.dumps(doc, indent=2))
    return doc


def _arena_over_budget(spec: ArchSpec, budget) -> str | None:
    """Why the exported C's arena (the planned ``runtime`` arena, whatever convention the run was
    budgeted with) does not fit the run's RAM budget; None when it fits or there is no RAM limit."""
    from ..run.budget import format_bytes

    if budget is None or budget.ram_bytes is None:
        return None
    arena = evaluate(spec, "int8", "runtime", profile=False).peak_ram_bytes
    if arena <= budget.ram_bytes:
        return None
    return (f"the exported C needs a {format_bytes(arena, 'KiB')} arena, more than the run's RAM budget of "
            f"{format_bytes(budget.ram_bytes, 'KiB')} (the run used the {budget.convention} convention)")


def write_project(qnet, spec: ArchSpec, out: Path, images: np.ndarray, class_names: list[str] | None = None) -> dict[str, Any]:
    """Write the C project of ``qnet`` (quantized from a model of ``spec``) into ``out``, with
    ``images`` (uint8 NHWC) as the sample (the first) and the validation batch, and their int8
    reference outputs. Returns the ``export.json`` fields it knows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generated = generate(qnet, spec, out, class_names)
    runtime = out / "runtime"
    runtime.mkdir(exist_ok=True)
    for f in runtime_files():
        shutil.copy2(f, runtime / f.name)
    for f in TEMPLATES.iterdir():
        shutil.copy2(f, out / f.name)
    q_batch = (images.astype(np.int16) - 128).astype(np.int8)
    expected = qnet.run(images).astype(np.int8)
    (out / "sample_input.bin").write_bytes(q_batch[0].tobytes())
    (out / "expected_output.bin").write_bytes(expected[0].tobytes())
    (out / "val_input.bin").write_bytes(q_batch.tobytes())
    (out / "val_expected.bin").write_bytes(expected.tobytes())
    (out / "sample_input.h").write_text("/* One validation image, int8 NHWC (q = pixel - 128). Generated. */\n"
                                        "#include <stdint.h>\n" + c_array("sample_input", q_batch[0]) + "\n")
    h, w, c = spec.input
    costs = {conv: evaluate(spec, "int8", conv) for conv in ("standard", "runtime")}
    doc: dict[str, Any] = {
        "spec": spec.to_dict(),
        "input": {"shape": [h, w, c], "scale": qnet.input.scale, "zero_point": qnet.input.zero_point},
        "output": {"size": generated.output_size, "scale": qnet.output.scale, "zero_point": qnet.output.zero_point},
        "arena_bytes": generated.plan.arena_bytes, "const_bytes": generated.const_bytes,
        "kernel_calls": len(generated.plan.steps),
        "calls": generated.calls,  # model_mark == marker while the call runs (rnnpool-nas measure)
        "predicted": {"runtime_peak_ram_bytes": costs["runtime"].peak_ram_bytes,
                      "standard_peak_ram_bytes": costs["standard"].peak_ram_bytes,
                      "model_bytes": costs["standard"].model_bytes, "madds": costs["standard"].madds,
                      "params": costs["standard"].params},
        "sample_images": int(len(images)),
        "build": {},
    }
    if qnet.heads:
        doc["output"]["heads"] = [
            {"loc": {"scale": hd.loc.output.scale, "zero_point": hd.loc.output.zero_point},
             "conf": {"scale": hd.conf.output.scale, "zero_point": hd.conf.output.zero_point}} for hd in qnet.heads]
    assert doc["arena_bytes"] == doc["predicted"]["runtime_peak_ram_bytes"]
    return doc


def _sample_images(spec: ArchSpec, dataset, count: int) -> np.ndarray:
    """The first ``count`` validation images at the input size, uint8 NHWC (a detector's resized
    as its validation images are scored)."""
    h, w, c = spec.input
    if spec.detection is None:
        from ..data import adapt_images

        return adapt_images(dataset.x_val[:count], h, w, c)
    from ..train.detection import to_input

    val = []
    for i in range(len(dataset.val)):
        sample = dataset.val.get(i)
        if sample is not None:
            val.append(to_input(sample.image, sample.boxes, (h, w), c)[0])
        if len(val) >= count:
            break
    return np.stack(val)


def _make(out: Path, *targets: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(out), *targets], capture_output=True, text=True, timeout=timeout)


def build_and_measure(out: Path, log=print) -> dict[str, Any]:
    """Build and check what the installed toolchains allow; every figure is measured here."""
    result: dict[str, Any] = {}
    if shutil.which("gcc") and shutil.which("make"):
        proc = _make(out, "check")
        result["host_bit_exact"] = proc.returncode == 0
        if proc.returncode != 0:
            raise UserError(f"the exported C does not match the int8 reference: {(proc.stdout + proc.stderr).strip()[-300:]}")
        log("host build: bit-exact with the int8 reference on the sample and the validation batch")
    if not shutil.which("arm-none-eabi-gcc"):
        result["m4"] = "arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
        return result
    proc = _make(out, "m4")
    if proc.returncode != 0:
        raise UserError(f"the Cortex-M4 build failed: {(proc.stdout + proc.stderr).strip()[-300:]}")
    result.update(elf_sizes(out / "build" / "model_m4.elf"))
    result["stack_bound_bytes"] = stack_bound(out / "build" / "m4")
    if shutil.which("qemu-system-arm"):
        qemu = _make(out, "run-qemu", timeout=300)
        host = _make(out, "run-host")
        q_out = [line for line in qemu.stdout.splitlines() if line.startswith("output:")]
        h_out = [line for line in host.stdout.splitlines() if line.startswith("output:")]
        result["qemu_matches_host"] = bool(q_out) and q_out == h_out
        stack = re.search(r"stack_bytes: (\d+)", qemu.stdout)
        result["stack_measured_bytes"] = int(stack.group(1)) if stack else None
        if not result["qemu_matches_host"]:
            raise UserError(f"the Cortex-M4 run under QEMU differs from the host: {qemu.stdout.strip()[-200:]}")
        log(f"Cortex-M4 under QEMU: same output as the host; stack used {result['stack_measured_bytes']} bytes")
    result["ram_bytes"] = result["data"] + result["bss"] + (result.get("stack_measured_bytes") or result["stack_bound_bytes"])
    return result


def elf_sizes(elf: Path) -> dict[str, int]:
    """Flash (.text incl. constants, + .data's initial values) and RAM sections of the m4 ELF."""
    proc = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True)
    sections = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    text, data, bss = sections.get(".text", 0), sections.get(".data", 0), sections.get(".bss", 0)
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + sections.get(".ARM.exidx", 0) + data,
            "stack_reserved": sections.get(".stack", 0)}


def stack_bound(obj_dir: Path) -> int:
    """An upper bound of the stack from ``-fstack-usage``: main + model_run (+ model_body) + the
    stream driver (rn_stream_run, then one ``push`` frame per level of the longest streamed chain,
    ``MODEL_STREAM_DEPTH`` in model.h, and ``node_row``) + the three largest runtime frames (the
    deepest kernel chain is three calls deep: rn_mbconv -> rn_depthwise_row -> its 3x3 inner
    kernel)."""
    frames: dict[str, int] = {}
    for su in obj_dir.glob("*.su"):
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip().isdigit():
                frames[parts[0].rsplit(":", 1)[-1]] = max(frames.get(parts[0].rsplit(":", 1)[-1], 0), int(parts[1]))
    depth = 0
    header = obj_dir.parents[1] / "model.h"
    if header.is_file():
        found = re.search(r"#define MODEL_STREAM_DEPTH (\d+)", header.read_text())
        depth = int(found.group(1)) if found else 0
    fixed = frames.get("main", 0) + frames.get("model_run", 0) + frames.get("model_body", 0)
    if depth:
        fixed += frames.get("rn_stream_run", 0) + depth * frames.get("push", 0) + frames.get("node_row", 0)
    others = sorted((v for k, v in frames.items() if k.startswith("rn_") and k != "rn_stream_run"), reverse=True)
    return fixed + sum(others[:3])
