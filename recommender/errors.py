"""Exception types and the problem report shared by the whole library.

Every message is written for a person: it names the file, the column, the rows
and what to do about it. Problems are collected into one report instead of
stopping at the first one, so a user can fix a file in a single pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

#: How many row numbers a message lists before it says "and N more".
MAX_ROWS_SHOWN = 10


def format_rows(rows: Sequence[int], label: str = "line") -> str:
    """Return ``"lines 3, 7 and 9"`` or ``"lines 3, 7, ... (and 120 more)"``."""
    rows = list(rows)
    if not rows:
        return ""
    shown = [str(r) for r in rows[:MAX_ROWS_SHOWN]]
    plural = label + ("s" if len(rows) > 1 else "")
    if len(rows) > MAX_ROWS_SHOWN:
        return f"{plural} {', '.join(shown)} (and {len(rows) - MAX_ROWS_SHOWN} more)"
    if len(shown) == 1:
        return f"{plural} {shown[0]}"
    return f"{plural} {', '.join(shown[:-1])} and {shown[-1]}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (``severity="error"``) or worth knowing (``"warning"``) about an input.

    Parameters
    ----------
    message : str
        What is wrong, in plain words.
    file : str, optional
        The file (or table) it is about.
    column : str, optional
        The column it is about.
    rows : tuple of int
        Line numbers in the file (header = line 1) or row numbers of a table.
    fix : str, optional
        What the user can do about it.
    severity : {"error", "warning"}
    row_label : str
        ``"line"`` for files, ``"row"`` for in-memory tables.
    n_rows : int, optional
        Total number of affected rows when ``rows`` is only a sample.
    """

    message: str
    file: str | None = None
    column: str | None = None
    rows: tuple[int, ...] = ()
    fix: str | None = None
    severity: str = "error"
    row_label: str = "line"
    n_rows: int | None = None

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.column:
            where.append(f"column '{self.column}'")
        if self.rows:
            total = self.n_rows if self.n_rows is not None else len(self.rows)
            rows = list(self.rows)
            text = format_rows(rows, self.row_label)
            if total > len(rows):
                text = f"{format_rows(rows[:MAX_ROWS_SHOWN], self.row_label)} (of {total})"
            where.append(text)
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class DataError(ValueError):
    """Bad input data. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Problem | str | Iterable[Problem | str]):
        if isinstance(problems, (Problem, str)):
            problems = [problems]
        self.problems: list[Problem] = [
            p if isinstance(p, Problem) else Problem(message=str(p)) for p in problems
        ]
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelFitError(RuntimeError):
    """Training failed in a way the user can fix (diverging loss, empty data)."""


class BundleError(ValueError):
    """A saved model bundle that cannot be loaded (corrupt, unsafe, or for other data)."""


@dataclass
class Report:
    """Problems collected while reading and validating inputs."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, message: str, **kwargs) -> None:
        self.problems.append(Problem(message=message, **kwargs))

    def warn(self, message: str, **kwargs) -> None:
        self.problems.append(Problem(message=message, severity="warning", **kwargs))

    def extend(self, other: "Report | Iterable[Problem]") -> None:
        self.problems.extend(other.problems if isinstance(other, Report) else other)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self) -> None:
        """Raise one DataError listing every error, then the warnings that explain them (dropped rows)."""
        if self.errors:
            raise DataError(self.errors + self.warnings)
