"""User-facing errors: one line naming the file and the field; the CLI turns them into exit code 2."""

from __future__ import annotations


class RetargetError(Exception):
    """Bad input from the user (a file, a field, a name). Printed as one line; exit code 2."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = ": ".join(str(p) for p in (source, field) if p)
        super().__init__(f"{where}: {message}" if where else message)
