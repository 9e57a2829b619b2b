"""One error type for everything a user can get wrong.

The CLI prints a NertuneError as a single line on stderr and exits with code 2 —
no traceback. Anything else escaping is a bug in nertune.
"""

from __future__ import annotations


class NertuneError(Exception):
    """A problem with the user's input, named so they can fix it."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, fix: str | None = None):
        self.path = path
        self.line = line
        self.fix = fix
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        text = f"{where}{message}"
        if fix:
            text += f" — fix: {fix}"
        # One unwrapped line: a user greps logs for it.
        super().__init__(" ".join(text.split("\n")))
