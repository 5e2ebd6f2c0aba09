"""One exception type for user-facing errors: what went wrong, and what to do about it."""

from __future__ import annotations


class ColakitError(Exception):
    """A problem the user can fix. The CLI prints it as one line, without a traceback.

    ``hint`` says what to do; it is appended to the message so API users see it too.
    """

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = problem
        self.hint = hint
        super().__init__(problem if not hint else f"{problem} -- {hint}")
