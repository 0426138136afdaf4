"""The run directory (``runs/<name>/``): every command that reads or writes a run goes through here.

``status`` is the one list of trial statuses (with their labels and colours).
"""

from .status import FINAL, STYLES, UNTRAINED, Status, StatusStyle, is_final

__all__ = ["FINAL", "STYLES", "Status", "StatusStyle", "UNTRAINED", "is_final"]
