"""Moved to :mod:`rnnpool_nas.run.budget` (issue 17: the run directory has its own package).
This old path stays importable: it is the same module object."""

import sys

from ..run import budget as _moved

sys.modules[__name__] = _moved
