"""The one exception type for expected user errors (bad input): the CLI prints it and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a file, key or value that is wrong, with how to fix it, in one line."""

    exit_code = 2


def choices_hint(name: str, value: object, choices: object) -> str:
    return f"unknown {name} {value!r}; choose one of: {', '.join(sorted(map(str, choices)))}"
