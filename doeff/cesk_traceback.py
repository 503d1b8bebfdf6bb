"""Source locations and captured tracebacks, at the import path doeff's API names; they live
in `doeff.cesk.traceback`, with the machine that records them."""

from doeff.cesk.traceback import (
    CapturedTraceback,
    CodeLocation,
    CodeMark,
    frame_chain,
    is_internal,
    raised_at,
    raised_line,
    short_repr,
    suspended_at,
    suspended_marks,
    user_python_traceback,
)

__all__ = [
    "CapturedTraceback",
    "CodeLocation",
    "CodeMark",
    "frame_chain",
    "is_internal",
    "raised_at",
    "raised_line",
    "short_repr",
    "suspended_at",
    "suspended_marks",
    "user_python_traceback",
]
