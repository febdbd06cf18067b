"""The documentation against the code: the strategy table, the layer table, and the links.

The README's strategy table and docs/strategies.md must name every kind ``fsyncstudy.strategies.KINDS``
defines, with the protocol labels, nominal window and acknowledgement point the code gives;
docs/architecture.md must list every module of ``fsyncstudy.layers()`` with its layer number; and every
relative link in README.md, CHANGELOG.md and docs/**/*.md must reach a file (and a heading, when it
names one) that exists.
"""
import re
from pathlib import Path

import pytest
from conftest import REPO

import fsyncstudy
from fsyncstudy.strategies import KINDS, MAX_INTERVAL_MS

README = REPO / "README.md"
DOCS = REPO / "docs"
STRATEGY_PAGES = [README, DOCS / "strategies.md"]
#: The pages the README promises, one per part.
PAGES = ["strategies", "cli", "library", "datasets", "statistics", "node", "lab", "load", "crash", "peers",
         "realdb", "fleet", "architecture"]
#: How the table spells each kind's nominal window (``Kind.window``).
WINDOW_TEXT = {"zero": "0 ms", "interval": "N ms", "os": "OS dependent"}


# -- reading markdown ------------------------------------------------------------------------------

def without_code(text: str) -> str:
    """The text with fenced code blocks blanked (line count kept) and inline code spans removed."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def cells(row: str) -> list[str]:
    """The cells of a markdown table row (a ``|`` inside backticks does not split)."""
    parts, cur, in_code = [], "", False
    for ch in row.strip().strip("|"):
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table in ``text`` as (header cells, rows of cells), outside code blocks."""
    lines, out, i, fenced = text.splitlines(), [], 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if (not fenced and line.startswith("|") and i + 1 < len(lines)
                and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip())):
            header, rows, i = cells(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append((header, rows))
            continue
        i += 1
    return out


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def column(header: list[str], words: str) -> int:
    found = [k for k, h in enumerate(header) if words in h]
    assert len(found) == 1, f"one column of {header} should name {words!r}"
    return found[0]


# -- the strategy table ----------------------------------------------------------------------------

def strategy_table(path: Path):
    """The one table on ``path`` whose header has a nominal loss window and the protocol labels."""
    found = [(h, rows) for h, rows in tables(path.read_text())
             if any("nominal loss window" in c for c in h) and any("durability" in c for c in h)]
    assert len(found) == 1, f"{path.relative_to(REPO)}: expected one strategy table, found {len(found)}"
    return found[0]


def row_name(kind) -> str:
    return f"{kind.name}_<N>ms" if kind.has_interval else kind.name


@pytest.mark.parametrize("path", STRATEGY_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_strategy_table_has_one_row_per_kind_of_the_code(path):
    header, rows = strategy_table(path)
    names = [code_spans(r[0])[0] if code_spans(r[0]) else r[0] for r in rows]
    assert len(names) == len(set(names)), f"a kind appears twice: {names}"
    assert sorted(names) == sorted(row_name(k) for k in KINDS.values()), (
        f"{path.relative_to(REPO)}: the table's rows {names} are not the kinds of fsyncstudy/strategies.py")


@pytest.mark.parametrize("path", STRATEGY_PAGES, ids=lambda p: str(p.relative_to(REPO)))
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_row_says_what_the_code_says(path, kind):
    k = KINDS[kind]
    header, rows = strategy_table(path)
    by_name = {code_spans(r[0])[0]: r for r in rows if code_spans(r[0])}
    assert row_name(k) in by_name, f"{path.relative_to(REPO)}: no row for {row_name(k)}"
    row = by_name[row_name(k)]
    assert len(row) == len(header), f"{row_name(k)}: {len(row)} cells under {len(header)} columns"
    labels = code_spans(row[column(header, "durability")])
    assert labels == [k.durability.format(n="<N>"), k.data_loss_window.format(n="<N>")], (
        f"{path.relative_to(REPO)}, {row_name(k)}: protocol labels {labels}")
    assert row[column(header, "nominal loss window")] == WINDOW_TEXT[k.window]
    acked = row[column(header, "acknowledged")]
    assert ("sync" in acked) == k.acks_durable, f"{row_name(k)} is acknowledged {acked!r}"
    if k.has_interval:
        assert f"0..{MAX_INTERVAL_MS}" in row[0], f"{row_name(k)}: the interval's range is not 0..{MAX_INTERVAL_MS}"


def test_the_readme_and_the_strategies_page_show_the_same_table():
    readme, page = (strategy_table(p) for p in STRATEGY_PAGES)
    assert readme == page


# -- the layer table -------------------------------------------------------------------------------

def layer_table() -> tuple[dict[str, int], set[int]]:
    """docs/architecture.md's layer table: {module: layer} and the layers marked as measuring."""
    found = [(h, rows) for h, rows in tables((DOCS / "architecture.md").read_text()) if h and h[0] == "layer"]
    assert len(found) == 1, f"docs/architecture.md: expected one layer table, found {len(found)}"
    header, rows = found[0]
    modules, measuring = {}, set()
    for row in rows:
        layer = int(row[0])
        for name in code_spans(row[column(header, "modules")]):
            assert name not in modules, f"{name} is listed twice"
            modules[name] = layer
        if row[column(header, "measuring")] == "yes":
            measuring.add(layer)
    return modules, measuring


def test_the_architecture_page_lists_every_module_with_its_layer():
    modules, _ = layer_table()
    table = fsyncstudy.layers()
    assert len(table) >= 20, table
    missing = {m: n for m, n in table.items() if modules.get(m) != n}
    assert not missing, f"docs/architecture.md does not list these with their layer: {missing}"
    extra = sorted(set(modules) - set(table))
    assert not extra, f"docs/architecture.md lists modules the layer table does not have: {extra}"


def test_the_architecture_page_marks_the_measuring_layers():
    _, measuring = layer_table()
    assert measuring == set(fsyncstudy.MEASURING_LAYERS)


# -- links -----------------------------------------------------------------------------------------

def markdown_files() -> list[Path]:
    return [README, REPO / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    out, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*)", line)):
            out.append(m.group(1))
    return out


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    out, seen = set(), {}
    for heading in headings(path):
        s = slug(heading)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def links(path: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code(path.read_text()))


def test_there_are_links_to_check():
    assert len([t for p in markdown_files() for t in links(p)]) > 50


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_reaches_a_file_and_heading_that_exist(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):     # https:, mailto:: not ours to check
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_the_readme_links_every_page_and_stays_short():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, "README.md is for the first screen: the rest goes to docs/"
    for page in PAGES:
        assert (DOCS / f"{page}.md").exists(), f"docs/{page}.md is missing"
        assert f"(docs/{page}.md)" in text, f"README.md does not link docs/{page}.md"


def test_the_docs_index_lists_every_page_and_finding():
    index = (DOCS / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")) + sorted((DOCS / "findings").glob("*.md")):
        if page.name != "README.md":
            assert f"({page.relative_to(DOCS)})" in index, f"docs/README.md does not link {page.relative_to(DOCS)}"
