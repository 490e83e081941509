"""One output layer: every command's result leaves through `emit`, as a table, tree, JSON, CSV or Markdown.

A view module declares its columns once, as data (`Column`: key, header, formatter, priority, alignment, the
formats it appears in), and one row function (`View.rows`); the rich table, the CSV and the Markdown table are
all made from that declaration by `cells`, so the three cannot disagree. Every JSON document carries the same
`schema` number and `kind`, and the result's setup header as `setup`; every heading starts with the same setup
(`header.setup_line`).
A number that is not finite is written to JSON as null: NaN and Infinity are not JSON, and scripts choke on them.

Tables fit the terminal they are drawn on: when the columns do not fit, the least important ones (the highest
`priority`) are left out first, names and lists fold onto more lines, and a number is never cut.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from unetinspect.errors import OutputError
from unetinspect.render.export import write_output
from unetinspect.render.header import SEPARATOR, setup_dict, setup_line
from unetinspect.render.units import shape_str

if TYPE_CHECKING:
    from unetinspect.sources.session import Setup

SCHEMA = 1  # the version of every JSON document: it changes only when a field changes meaning

TABLE, TREE, JSON, CSV, MARKDOWN = "table", "tree", "json", "csv", "markdown"
GRID = frozenset({TABLE, CSV, MARKDOWN})  # where a column appears unless it says otherwise
FILE_WIDTH = 160  # a table written to a file or a pipe is not squeezed to the 80 columns rich assumes there
SUFFIXES = {"htm": "html", "md": MARKDOWN, "txt": TABLE}  # a file's suffix that names a format of another name

Cell = str | Text
R = TypeVar("R")  # the result a view shows
Item = TypeVar("Item")
Whole = TypeVar("Whole")


@dataclass(frozen=True)
class Line(Generic[Item, Whole]):
    """A table row with the whole it is a share of (a block and its trace, a call and the step's saved bytes),
    for the % columns."""

    row: Item
    whole: Whole
    shown: Callable[[str], str] = str  # how a module path is shown (`--names`): itself, its LDM name or LBW ID


@dataclass(frozen=True)
class Column:
    """One column of a view, declared once for the table, the CSV and the Markdown table.

    `text` is the cell as people read it (table, Markdown); `value` as scripts read it (CSV: raw numbers,
    full paths), the text when not given; `markdown` overrides the text in Markdown (e.g. a path as `code`).
    """

    key: str  # the CSV header
    header: str  # the table and Markdown header
    text: Callable[[Any], Cell | float | None]  # a number or None only in a column of CSV alone
    value: Callable[[Any], object] | None = None
    markdown: Callable[[Any], str] | None = None
    priority: int = 0  # 0: always shown; on a narrow terminal the highest priority goes first
    justify: Literal["left", "right"] = "left"
    style: str | None = None
    fold: bool = False  # a name or a list that may fold onto more lines; numbers and shapes never do
    min_width: int = 12  # the narrowest a folding column is squeezed to before columns are left out
    formats: frozenset[str] = GRID
    when: Callable[[Any], bool] | None = None  # in the table and Markdown only where this holds (CUDA memory)

    def shown(self, result: object, fmt: str) -> bool:
        """Whether this column is in `fmt` for `result`; CSV keeps every column, so scripts see one header."""
        return fmt in self.formats and (self.when is None or fmt == CSV or self.when(result))


class View(Generic[R]):
    """What one command shows of its result, an `R`. A view module subclasses it for its result type
    (`class SummaryView(View["Summary"])`): its columns, its rows, its heading, its JSON, its files. The result
    is positional-only, so a view names it for what it is (`summary`, `profile`)."""

    kind: str = ""  # the JSON document's "kind"
    columns: tuple[Column, ...] = ()
    # Formats that are files of their own (a picture, a page) rather than text: `write` makes them, and only
    # with -o. A view of only such formats (the diagram, the report) sets `formats` to return just them.
    file_formats: tuple[str, ...] = ()

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        """The formats this view can be written in (its class says: the CLI offers them before any result exists);
        a tree only where the view draws one, CSV and Markdown only where it declares columns."""
        tree = (TREE,) if cls.tree is not View.tree else ()
        text = (TABLE, *tree, JSON, CSV, MARKDOWN) if cls.columns else (TABLE, *tree, JSON)
        return (*text, *cls.file_formats)

    @classmethod
    def chosen_format(cls, fmt: str | None, output: Path | None = None) -> str:
        """The format asked for; none asked: the one of the view's formats that `output`'s suffix names
        (`-o maps.png`, `-o run.json`), else the view's first. A command that must compute more for a file format
        (a page) asks this before it runs."""
        if fmt is None and output is not None:
            suffix = output.suffix.lower().lstrip(".")
            named = SUFFIXES.get(suffix, suffix)
            fmt = named if named in cls.formats() else None
        fmt = fmt or cls.formats()[0]
        if fmt in cls.file_formats and output is None:  # refused before any work, not after it
            raise OutputError(f"{fmt} is written to a file", f"add -o FILE.{fmt}")
        return fmt

    def write(self, result: R, /, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        """Write one of `file_formats` to `path` (never over one of `inputs`); returns the path written."""
        raise NotImplementedError(f"the {self.kind} view writes no {fmt} file")

    def rows(self, result: R, /) -> Sequence[Any]:
        """The one row function: the objects the columns format, in order."""
        return ()

    def footer(self, result: R, /) -> Sequence[Any]:
        """Rows that total the others (the whole step): after a rule in the table, last in CSV and Markdown."""
        return ()

    def setup(self, result: R, /) -> Setup | None:
        """The setup header of the result (`result.setup`), rendered by `header.setup_line` and `setup_dict`."""
        return getattr(result, "setup", None)

    def heading(self, result: R, /) -> list[str]:
        """The lines above the table: the setup, and in views that say more, how it was run."""
        setup = self.setup(result)
        return [setup_line(setup)] if setup else []

    def totals(self, result: R, /) -> list[tuple[str, str]]:
        """(label, sentence) lines under the table: the totals and what to know about them."""
        return []

    def data(self, result: R, /) -> dict[str, Any]:
        """The view's part of the JSON document (the schema, kind and setup are added by `document`)."""
        return {}

    def table(self, result: R, /) -> RenderableType:
        """The heading, the table fitted to the terminal, and the totals."""
        parts: list[RenderableType] = [heading_text(self.heading(result))]
        if self.rows(result) or self.footer(result):
            parts.append(FittedTable(self, result))
        parts.append(totals_grid(self.totals(result)))
        return Group(*parts)

    def tree(self, result: R, /) -> RenderableType:
        raise NotImplementedError(f"the {self.kind} view draws no tree")


class FileView(View[R]):
    """A view whose every format is a file of its own (a diagram, a page, a trace): no table, no JSON."""

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        return cls.file_formats


# ---- the heading ----------------------------------------------------------------------------------------------


def heading_text(lines: Iterable[str]) -> RenderableType:
    """The heading as lines of its own above the table: they wrap at the terminal's width, never cut."""
    return _Heading(list(lines))


class _Heading:
    """Heading lines that wrap between their " · " parts where they can, so "text 77 tokens" stays together."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wrapped: list[str] = []
        for line in self.lines:
            current = ""
            for part in line.split(SEPARATOR):
                joined = f"{current}{SEPARATOR}{part}" if current else part
                if current and cell_len(joined) > options.max_width:
                    wrapped.append(current)
                    joined = part
                current = joined
            wrapped.append(current)
        yield Text("\n".join(wrapped), style="bold", overflow="fold")


# ---- rows and cells -----------------------------------------------------------------------------------------------


def shown_columns(view: View[R], result: R, fmt: str) -> list[Column]:
    return [column for column in view.columns if column.shown(result, fmt)]


def cells(columns: Sequence[Column], row: Any, fmt: str) -> list[Any]:
    """One row in one format: rich text for the table, plain text for Markdown, raw values for CSV."""
    if fmt == CSV:
        return [(column.value or column.text)(row) for column in columns]
    if fmt == MARKDOWN:
        return [column.markdown(row) if column.markdown else plain(column.text(row)) for column in columns]
    return [column.text(row) for column in columns]


def plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class FittedTable(Generic[R]):
    """A view's table, laid out when the width it is drawn at is known (the terminal's, or a file's).

    Columns are left out, highest priority first, until the rest fit with every number whole and every folding
    column at least its `min_width`; the width left over goes to the folding columns, most important first.
    """

    def __init__(self, view: View[R], result: R) -> None:
        self.view, self.result = view, result

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = shown_columns(self.view, self.result, TABLE)
        rows = [cells(columns, row, TABLE) for row in self.view.rows(self.result)]
        footer = [cells(columns, row, TABLE) for row in self.view.footer(self.result)]
        keep = list(range(len(columns)))
        while True:
            table = _table([columns[i] for i in keep], [[r[i] for i in keep] for r in rows],
                           [[r[i] for i in keep] for r in footer])
            if _fit_folding_columns(table, [columns[i] for i in keep], console, options):
                break
            droppable = [i for i in keep if columns[i].priority > 0]
            if not droppable:
                break
            keep.remove(max(reversed(droppable), key=lambda i: columns[i].priority))  # the rightmost of the least
        yield table


def _table(columns: Sequence[Column], rows: Sequence[Sequence[Any]], footer: Sequence[Sequence[Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in columns:
        table.add_column(column.header, justify=column.justify, style=column.style, no_wrap=not column.fold,
                         overflow="fold" if column.fold else "ellipsis")
    for index, row in enumerate(rows):
        table.add_row(*map(_inert, row), end_section=index == len(rows) - 1 and bool(footer))
    for row in footer:
        table.add_row(*map(_inert, row), style="bold")
    return table


def _inert(cell: Any) -> Text:
    """A cell as text that rich does not read as markup: a name with "[...]" in it is shown as it is."""
    return cell if isinstance(cell, Text) else Text(str(cell))


def _fit_folding_columns(table: Table, columns: Sequence[Column], console: Console,
                         options: ConsoleOptions) -> bool:
    """Give the folding columns fixed widths so the table fits `options.max_width`; False when it cannot.

    Every other column keeps its whole width. Each folding column gets at least its `min_width` (or less, if its
    widest cell is narrower), then what is left goes to them in declaration order, up to their widest cell.
    """
    wide = options.update_width(10**6)
    natural = [max(Measurement.get(console, wide, cell).maximum for cell in (spec.header, *spec.cells))
               for spec in table.columns]
    # What the table adds around its cells (edges, separators, padding): its own width less theirs, unfolded.
    frame = Measurement.get(console, wide, table).maximum - sum(natural)
    fixed = sum(width for width, column in zip(natural, columns) if not column.fold)
    folding = [i for i, column in enumerate(columns) if column.fold]
    widths = {i: min(natural[i], columns[i].min_width) for i in folding}
    left = options.max_width - frame - fixed - sum(widths.values())
    if left < 0:
        return False
    for i in folding:
        extra = min(left, natural[i] - widths[i])
        widths[i] += extra
        left -= extra
    for i, width in widths.items():
        table.columns[i].width = max(width, 1)
    return True


def totals_grid(lines: Sequence[tuple[str, str]]) -> RenderableType:
    """Labelled sentences under a table; a long sentence wraps under itself, not under its label."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold", no_wrap=True)
    grid.add_column()
    for label, sentence in lines:
        grid.add_row(Text(label, style="bold yellow" if label == "note" else "bold"), sentence)
    return grid if lines else Text()


# ---- text formats -------------------------------------------------------------------------------------------------


def document(view: View[R], result: R) -> dict[str, Any]:
    """The JSON document: the schema and kind, the setup header where the result has one, the view's data."""
    setup = view.setup(result)
    head: dict[str, Any] = {"schema": SCHEMA, "kind": view.kind}
    if setup is not None:
        head["setup"] = setup_dict(setup)
    return {**head, **view.data(result)}


def json_text(data: object) -> str:
    """A JSON document as scripts read it: indented, UTF-8 kept (×, µ), non-finite numbers as null."""
    return json.dumps(finite(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def finite(data: object) -> object:
    """`data` with every NaN or infinite float replaced by None (and tuples as lists): JSON has no such numbers,
    and strict readers (JavaScript's JSON.parse, jq) refuse the `NaN` Python would write. Config values from
    strangers' files and timings of zero-length steps can be non-finite."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(value) for value in data]
    return data


def csv_text(view: View[R], result: R) -> str:
    """CSV with a header row, the rows then the footer rows; None, NaN and Infinity are empty cells."""
    columns = shown_columns(view, result, CSV)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([column.key for column in columns])
    for row in [*view.rows(result), *view.footer(result)]:
        writer.writerow(["" if cell is None else cell for cell in map(finite, cells(columns, row, CSV))])
    return out.getvalue()


def markdown_text(view: View[R], result: R) -> str:
    """The heading lines in bold, a GitHub table (numbers right-aligned), the totals as a list."""
    columns = shown_columns(view, result, MARKDOWN)
    rows = [cells(columns, row, MARKDOWN) for row in [*view.rows(result), *view.footer(result)]]
    parts = [f"**{line}**" for line in view.heading(result)]
    if rows:
        header = [column.header.replace("\n", " ").strip() for column in columns]
        align = ["---:" if column.justify == "right" else "---" for column in columns]
        parts.append("\n".join(_markdown_line(line) for line in [header, align, *rows]))
    totals = view.totals(result)
    if totals:
        parts.append("\n".join(f"- **{label}**: {sentence}" for label, sentence in totals))
    return "\n\n".join(parts) + "\n"


def _markdown_line(cells_: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells_) + " |"


def shapes_text(shapes: Iterable[Sequence[int]]) -> str:
    """Several shapes in one cell: "1×4×64×64 1" (space-separated, as a CSV cell)."""
    return " ".join(shape_str(shape) for shape in shapes)


# ---- out --------------------------------------------------------------------------------------------------------


def render(view: View[R], fmt: str, result: R) -> str | RenderableType:
    """The result in one format: text for json/csv/markdown, a rich renderable for table/tree."""
    if fmt not in view.formats():
        raise OutputError(f"the {view.kind or 'result'} cannot be written as {fmt!r}",
                          f"use one of {', '.join(view.formats())}")
    if fmt == TABLE:
        return view.table(result)
    if fmt == TREE:
        return view.tree(result)
    if fmt == JSON:
        return json_text(document(view, result))
    return csv_text(view, result) if fmt == CSV else markdown_text(view, result)


def emit(view: View[R], fmt: str | None, result: R, *, output: Path | None = None,
         inputs: Iterable[str | Path | None] = (), console: Console | None = None) -> Path | None:
    """Show `result` through `view` in `fmt` (None: `View.chosen_format`): on `console` (stdout), or written whole
    to `output`, a picture or a page by the view's `write`.

    A file is never written over one of the command's `inputs`; a table in a file is plain text, FILE_WIDTH wide.
    Returns the path written, if any.
    """
    fmt = view.chosen_format(fmt, output)
    if fmt in view.file_formats and output is not None:
        return view.write(result, fmt, output, [i for i in inputs if i])
    content = render(view, fmt, result)
    if output is None:
        if isinstance(content, str):
            sys.stdout.write(content)
        else:
            (console or Console()).print(content)
        return None
    if not isinstance(content, str):
        capture = Console(record=True, width=FILE_WIDTH, file=io.StringIO(), no_color=True)
        capture.print(content)
        content = capture.export_text()
    return write_output(output, content, [i for i in inputs if i])
