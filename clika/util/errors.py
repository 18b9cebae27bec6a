"""One error type for bad input: the message names the file/line/key and the fix."""


class ClikaError(Exception):
    """User-facing error: entry points print it on one line (no traceback unless debug)."""

    def __init__(self, message: str, *, fix: str | None = None):
        self.fix = fix
        super().__init__(f"{message}" + (f" — fix: {fix}" if fix else ""))
