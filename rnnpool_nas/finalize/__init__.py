"""Retrain a search's finalists fully, quantize them, and test them once (``rnnpool-nas finalize``)."""

from ..run.final import final_results, finalized_checkpoint, read_final
from .runner import DEFAULT_EPOCHS, FinalizeConfig, FinalizeResult, finalize_trial, run_finalize

__all__ = ["DEFAULT_EPOCHS", "FinalizeConfig", "FinalizeResult", "final_results", "finalize_trial",
           "finalized_checkpoint", "read_final", "run_finalize"]
