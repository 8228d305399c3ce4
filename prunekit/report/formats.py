"""A Table as Markdown, CSV (numbers split into mean, std and n), LaTeX (booktabs) and a rich table."""
from __future__ import annotations

import csv
import io

from rich.table import Table as RichTable

from prunekit.report.metrics import Estimate
from prunekit.report.tables import Table

MISSING = "-"  # a setting without this number
# Characters LaTeX reads as commands; ± has no text-mode glyph in the default font encoding.
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
}


def cell_text(cell: str | Estimate | None) -> str:
    """A cell as the text formats print it: ``mean ± std (n)`` for numbers."""
    return MISSING if cell is None else str(cell)


def markdown(table: Table) -> str:
    """The table as a Markdown (pipe) table under its title, its notes below."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(text.replace("|", r"\|") for text in cells) + " |"

    align = ["---"] * table.labels + ["---:"] * (len(table.header) - table.labels)
    lines = [f"## {table.title}", "", line(table.header), line(align)]
    lines += [line([cell_text(cell) for cell in row]) for row in table.rows]
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def csv_text(table: Table) -> str:
    """The table (value cells all Estimates) as CSV, each value column split into ``<name> mean``,
    ``<name> std`` and ``<name> n``.

    Numbers are written in full precision, empty where a setting has none, for tools to read back.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    measured = table.header[table.labels:]
    writer.writerow(table.header[:table.labels] + [f"{name} {part}" for name in measured
                                                     for part in ("mean", "std", "n")])
    for row in table.rows:
        numbers = []
        for cell in row[table.labels:]:
            numbers += ["", "", ""] if cell is None else [
                repr(cell.mean), "" if cell.std is None else repr(cell.std), str(cell.n)]
        writer.writerow(row[:table.labels] + numbers)
    return out.getvalue()


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters written so that they print as themselves."""
    return "".join(LATEX_ESCAPES.get(char, char) for char in text)


def latex(table: Table) -> str:
    """The table as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), ready for ``\\input``."""
    def line(cells: list[str]) -> str:
        return " & ".join(latex_escape(text) for text in cells) + r" \\"

    spec = "l" * table.labels + "r" * (len(table.header) - table.labels)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", line(table.header), r"\midrule"]
    lines += [line([cell_text(cell) for cell in row]) for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def rich_table(table: Table) -> RichTable:
    """The table for the terminal; its notes go in the caption."""
    shown = RichTable(title=table.title, caption="\n".join(table.notes) or None, caption_justify="left")
    for index, name in enumerate(table.header):
        shown.add_column(name, justify="left" if index < table.labels else "right")
    for row in table.rows:
        shown.add_row(*(cell_text(cell) for cell in row))
    return shown
