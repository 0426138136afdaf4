"""The run directory (``runs/<name>/``): every command that reads or writes a run goes through here.

- ``store``: :class:`~rnnpool_nas.run.store.RunStore`, the files of a run (``config.json``,
  ``trials.parquet``, ``pareto.json``, ``study.db``, ``trials/NNNN/``), written atomically.
- ``status``: the trial statuses as one enum, with their labels and colours.
- ``budget``: device budgets and profiles; ``Budget.costs(spec)`` scores a spec the way the
  budget counts, ``Budget.fits(costs)`` is the feasibility predicate.
- ``pareto``: the one Pareto function and the accuracy/RAM hypervolume.
- :func:`read_yaml`: a YAML file a user gave (a device profile here, a search space in
  ``search/``), with one-line errors that name the file.

The search writes runs; report, browse, pareto, export (and finalize) read them, all through
this package. Torch-free.
"""

from ._yaml import read_yaml
from .status import FINAL, STYLES, UNTRAINED, Status, StatusStyle, is_final

__all__ = ["FINAL", "STYLES", "Status", "StatusStyle", "UNTRAINED", "is_final", "read_yaml"]
