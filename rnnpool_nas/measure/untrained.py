"""Export an architecture with random (untrained) weights: C projects to measure without training.

Latency does not depend on the weights' values, so the tests and ``benchmarks/bench_latency.py``
export random-weight models (batch norms perturbed as training leaves them, so that no channel is
constant) on the synthetic ``lines`` data set (``faces-synth`` for a detector), through the same
:func:`rnnpool_nas.export.exporter.export` a trained model takes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..arch.spec import ArchSpec


def untrained_model(spec: ArchSpec, seed: int = 0):
    """The model of ``spec`` with seeded random weights and batch norms perturbed as training
    leaves them (no channel constant), in eval mode."""
    import torch

    from ..arch.build import build as build_model

    torch.manual_seed(seed)
    model = build_model(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def export_untrained(spec: ArchSpec, out: str | Path, *, seed: int = 0, limit: int = 64, val_images: int = 1,
                     build: bool = False, log=None) -> dict[str, Any]:
    """Write the C project of ``spec`` with seeded random weights into ``out`` (see the module
    docstring); returns what ``export.json`` holds. ``build=False`` leaves building to ``make``."""
    import torch

    from ..export.exporter import Source, export

    model = untrained_model(spec, seed)
    with tempfile.TemporaryDirectory(prefix="rnnpool-untrained-") as tmp:
        checkpoint = Path(tmp) / "checkpoint.pt"
        torch.save({"model": model.state_dict(), "spec": spec.to_dict()}, checkpoint)
        dataset = "faces-synth" if spec.detection is not None else "lines"
        source = Source(spec, checkpoint, dataset, limit=limit, seed=seed, label=f"{spec.name or 'model'} (untrained)")
        return export(source, Path(out), val_images=val_images, build=build, log=log or (lambda *_: None))
