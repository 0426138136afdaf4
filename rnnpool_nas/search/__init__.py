"""Architecture search: budgets, search spaces, and the multi-objective search over them.

``budget`` holds the device budget (RAM, flash, MAdds, latency) read from a ``constraints/``
profile and CLI flags; ``space`` turns a ``search_spaces/`` YAML file into :class:`ArchSpec`
candidates for an Optuna trial. Both are torch-free. Import the submodules directly.
"""
