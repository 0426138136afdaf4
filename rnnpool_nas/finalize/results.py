"""Moved to :mod:`rnnpool_nas.run.final`: ``RUN/final/`` is part of the run directory, which
``run/`` owns (report and export read it without importing finalize). This old path stays
importable: it is the same module object."""

import sys

from ..run import final as _moved

sys.modules[__name__] = _moved
