"""Read back the three files of one GPU report and print what verify.yml asserts on, as JSON.

    check_report.py REPORT.csv REPORT.md REPORT.html

csv:  the rows as dicts (Python's csv module, so quoting must be right) and the header.
md:   the level-2 headings in order and the rows of the Problems table (node, gpu, problem).
html: whether the page is well-formed (every element closed in order, one DOCTYPE, nothing left
      open), whether it loads anything from elsewhere (src/href attributes, <link>, <script>), the
      number of body rows of each table by id, and the cells of the problems table.
"""

from __future__ import annotations

import csv
import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class PageCheck(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.external: list[str] = []
        self.doctypes = 0
        self.tables: dict[str, int] = {}
        self.problem_cells: list[list[str]] = []
        self._table: str | None = None
        self._in_tbody = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.doctypes += 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") or (value and "url(" in value):
                self.external.append(f"<{tag} {name}={value}>")
        if tag in ("link", "script", "iframe", "img"):
            self.external.append(f"<{tag}>")
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = 0
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody and self._table:
            self.tables[self._table] += 1
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.errors.append(f"<{tag}/> is not a void element")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"</{tag}> closes a void element")
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> at line {self.getpos()[0]} while open: {'/'.join(self.stack)}")
            return
        self.stack.pop()
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._table == "problems":
                self.problem_cells.append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if data.strip() and not self.stack:
            self.errors.append(f"text outside <html>: {data.strip()[:40]!r}")


def check_csv(path: Path) -> dict[str, Any]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, strict=True)
        rows = list(reader)
    return {"header": reader.fieldnames, "rows": rows, "widths": sorted({len(row) for row in rows})}


def check_md(path: Path) -> dict[str, Any]:
    lines = path.read_text(encoding="utf-8").splitlines()
    headings = [line[3:].strip() for line in lines if line.startswith("## ")]
    problems: list[list[str]] = []
    section = None
    for line in lines:
        if line.startswith("## "):
            section = line[3:].strip()
        elif section == "Problems" and line.startswith("| ") and not line.startswith("| Node "):
            problems.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return {"first_line": lines[0] if lines else "", "headings": headings, "problems": problems}


def check_html(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    page = PageCheck()
    page.feed(text)
    page.close()
    if page.stack:
        page.errors.append(f"left open: {'/'.join(page.stack)}")
    if page.doctypes != 1:
        page.errors.append(f"{page.doctypes} DOCTYPE declarations")
    return {
        "starts_with_comment": text.startswith("<!--"),
        "errors": page.errors,
        "external": page.external,
        "tables": page.tables,
        "problems": page.problem_cells,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    csv_path, md_path, html_path = (Path(arg) for arg in argv[1:])
    print(json.dumps({"csv": check_csv(csv_path), "md": check_md(md_path), "html": check_html(html_path)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
