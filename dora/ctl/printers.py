"""What doractl writes: tables, YAML, JSON, names and errors.

Tables are rich tables on a terminal and plain, kubectl-style text otherwise
(columns padded to their widest cell, three spaces apart, ``<none>`` for an empty
cell), so scripts can ``awk`` them and tests compare them as strings. ``-o yaml``
prints what ``apply -f`` reads back (several objects as a multi-document
stream); ``-o json`` prints one object, or a kubectl ``List`` of several.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from dora.api import errors
from dora.ctl.options import Output

if TYPE_CHECKING:
    from dora.api.v1 import object_pb2
    from dora.ctl import columns

# rich and the column tables are imported where a table is printed: most commands
# (apply, delete, -o yaml) never print one, and doractl's start-up is part of every
# command's latency. The codec (protobuf, yaml) is imported where an object is
# serialized: `doractl --help` imports this module and needs neither.

GAP = "   "


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def object_name(obj: object_pb2.Object) -> str:
    """``workload/blue.red``: how doractl names an object in its messages."""
    return f"{obj.kind.lower()}/{obj.metadata.name}"


def plain_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
                show_headers: bool = True) -> str:
    body = [list(r) for r in rows]
    lines = ([list(headers)] if show_headers else []) + body
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "".join(_plain_line(line, widths) + "\n" for line in lines)


def _plain_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                show_headers: bool = True, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if not is_terminal(out):
        out.write(plain_table(headers, rows, show_headers=show_headers))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    natural = len(plain_table(headers, rows, show_headers=show_headers).partition("\n")[0])
    console = Console(file=out, highlight=False)
    console.width = max(console.width, natural + 1)
    table = Table(box=None, show_header=show_headers, header_style="bold", pad_edge=False,
                  padding=(0, 3, 0, 0), show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell, style=_STATE_STYLES.get(cell.partition(",")[0], ""))
                        for cell in row))
    console.print(table)


# On a terminal, states read at a glance; a pipe gets the same words uncoloured.
_STATE_STYLES = {
    **dict.fromkeys(("Running", "Ready", "True"), "green"),
    **dict.fromkeys(("Pending", "Progressing", "Pulling", "Creating", "Unknown",
                     "Terminating", "Warning", "Paused"), "yellow"),
    "ZoneUnserved": "red",
    **dict.fromkeys(("Failed", "NotReady", "Lost", "Exited", "False"), "red"),
}


def table_rows(objs: Sequence[object_pb2.Object], cols: Sequence[columns.Column], *,
               now: dt.datetime) -> list[list[str]]:
    from dora.ctl import columns

    return [columns.row(obj, cols, now=now) for obj in objs]


def print_objects(objs: Sequence[object_pb2.Object], output: Output, *, kind: str,
                  show_headers: bool = True, now: dt.datetime | None = None,
                  out: TextIO | None = None) -> None:
    """``objs`` (all of ``kind``) in the format ``output`` names."""
    out = out or sys.stdout
    if output in (Output.table, Output.wide):
        from dora.ctl import columns

        cols = columns.columns(kind, wide=output is Output.wide)
        rows = table_rows(objs, cols, now=now or dt.datetime.now(dt.UTC))
        print_table([c.header for c in cols], rows, show_headers=show_headers, out=out)
    else:
        out.write(serialize(objs, output))


def serialize(objs: Sequence[object_pb2.Object], output: Output, *,
              single: bool = False) -> str:
    """``objs`` as YAML, JSON or names. JSON is a ``List`` (kubectl's shape, what a
    script can rely on) unless ``single``: one object asked for by name."""
    from dora.api import codec

    if output is Output.yaml:
        return codec.to_yaml(list(objs)) if objs else ""
    if output is Output.json:
        data = (codec.to_dict(objs[0]) if single and len(objs) == 1 else
                {"apiVersion": "v1", "kind": "List", "items": [codec.to_dict(o) for o in objs]})
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is Output.name:
        return "".join(object_name(o) + "\n" for o in objs)
    raise ValueError(f"not a serialized format: {output}")


class RowStream:
    """Rows printed one at a time as they come (``get --watch``), aligned as they go:
    a column is as wide as the widest cell printed in it so far."""

    def __init__(self, headers: Sequence[str], *, out: TextIO | None = None,
                 show_headers: bool = True) -> None:
        self.headers = list(headers)
        self.out = out or sys.stdout
        self.widths = [len(h) for h in headers]
        self._header_pending = show_headers
        self._bold = is_terminal(self.out)

    def start(self, rows: Sequence[Sequence[str]]) -> None:
        """Print the header and the first rows, sized together."""
        for row in rows:
            self._widen(row)
        if self._header_pending:
            self._header_pending = False
            line = _plain_line(self.headers, self.widths)
            self.out.write(f"\033[1m{line}\033[0m\n" if self._bold else line + "\n")
        for row in rows:
            self.out.write(_plain_line(row, self.widths) + "\n")
        self.out.flush()

    def add(self, row: Sequence[str]) -> None:
        self.start([row])

    def _widen(self, row: Sequence[str]) -> None:
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, row, strict=True)]


def error_text(exc: errors.DoraError, *, about: str = "") -> str:
    """``error: <message>`` and the field paths the message does not already name."""
    prefix = f"{about}: " if about else ""
    lines = [f"error: {prefix}{exc.message}"]
    for violation in exc.violations:
        text = str(violation)
        if text not in exc.message:
            lines.append(f"  {text}")
    return "\n".join(lines)
