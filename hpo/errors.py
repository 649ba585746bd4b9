"""The one exception type for expected user errors (bad input): the CLI prints it and exits 2."""

from __future__ import annotations

import argparse


class UserError(Exception):
    """Bad input: a file, key or value that is wrong, with how to fix it, in one line."""

    exit_code = 2


def one_line(e: BaseException | str, limit: int | None = 200) -> str:
    """An error's text on one line (whitespace collapsed), cut to ``limit`` characters."""
    text = " ".join(str(e).split())
    return text if limit is None else text[:limit]


def choices_hint(name: str, value: object, choices: object) -> str:
    return f"unknown {name} {value!r}; choose one of: {', '.join(sorted(map(str, choices)))}"


class OneLineParser(argparse.ArgumentParser):
    """Bad flags are bad input too: one line and exit 2, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")
