"""Every measured figure quoted in README.md and docs/method.md names the command that produces it.

The rule:

* The text is read as *units*: paragraphs, list items (with their continuation lines) and table
  rows. Fenced code blocks and HTML comments are not read.
* A *measured figure* is a number followed by a unit of measurement (nats, an attached ×, CPU-s,
  CPU-seconds, CPU-minutes, s, ms, µs, min, minutes, h, hours, days, %, GFLOP/s, PFLOP), or a
  "value ± error" pair.
* It is *not* a measured figure, and needs no command, when it is
  - a threshold or target: preceded by ≤, ≥, <, > or by the word than, under, within or target;
  - a value of the paper: preceded by "paper:" or "paper's";
  - a definition listed in DEFINITIONS below (each one a constant, not a measurement);
  - an estimate: the unit or a block it hangs from says "estimated".
* A unit that quotes a measured figure names its producing command: a backticked span that is a
  command (`python …`, `python3 …`, `.venv/bin/…`, `snakemake …`, `pytest …`), in the unit
  itself or in a block it hangs from. A table row hangs from the block directly above its table,
  and a list item from its parent item, or, for a top-level item, from the block directly above
  its list; such a block counts only if it ends with a colon (a caption or a lead-in).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/method.md")

NUMBER = r"(?<![\w.−-])[−-]?\d[\d,]*(?:\.\d+)?(?:e[−-]?\d+)?(?:\s*[–-]\s*[−-]?\d[\d,]*(?:\.\d+)?)?"
UNIT = (r"(?:\s*(?:nats?\b|CPU-s\b|CPU-seconds?\b|CPU-minutes?\b|ms\b|µs\b|min\b|minutes?\b|h\b|hours?\b"
        r"|days?\b|s\b|%|GFLOP/s|PFLOP\b)|×(?!\s*\d))")
FIGURE = re.compile(rf"(?P<num>{NUMBER}){UNIT}|{NUMBER}\s*±\s*{NUMBER}")
EXEMPT_BEFORE = re.compile(r"(?:[≤≥<>]|\bthan|\bunder|\bwithin|\btarget(?: of)?|paper:|paper's)\s*~?$")
COMMAND = re.compile(r"`(?:python3?|\.venv/bin/\S+|snakemake|pytest)\b[^`]*`")
# Constants quoted for what they are, not measured: the Gaussian constant at D = 50, and the one
# BDMC pass mark (vaegaps.tables) the docs name.
DEFINITIONS = ("≈ 45.9 nats at D = 50", "BDMC pass mark (0.5 nats)")


@dataclass
class Unit:
    line: int
    text: str
    parent: "Unit | None" = None
    item: bool = False

    def chain(self):
        u = self
        while u is not None:
            yield u
            u = u.parent


ITEM = re.compile(r"^(\s*)(?:[*-]|\d+\.)\s+")


def _caption(prev: "Unit | None") -> "Unit | None":
    """The block a table or list hangs from: the block directly above it, if it ends with ':'."""
    return prev if prev is not None and prev.text.rstrip().endswith(":") else None


def units(text: str) -> list[Unit]:
    """Paragraphs, list items and table rows, each with the block it hangs from (see the rule)."""
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out: list[Unit] = []
    prev = current = lead = table_parent = None   # previous block; block being extended; list lead-in
    items: list[tuple[int, Unit]] = []             # the open list items, by indent
    in_code = in_table = in_list = False
    for n, line in enumerate(text.splitlines(), 1):
        indent = len(line) - len(line.lstrip())
        if line.lstrip().startswith("```"):
            in_code, current = not in_code, None
        elif in_code:
            continue
        elif not line.strip():
            current, in_table = None, False
        elif line.lstrip().startswith("|"):
            if not in_table:
                in_table, table_parent = True, _caption(prev)
            if not re.match(r"^\s*\|[\s:|-]+\|\s*$", line):
                out.append(Unit(n, line, table_parent))
            current = None
        elif ITEM.match(line):
            items = [(i, u) for i, u in items if i < indent]
            if not in_list:
                in_list, lead = True, _caption(prev)   # a new list: its lead-in, if any
            current = prev = Unit(n, line, items[-1][1] if items else lead, item=True)
            items.append((indent, current))
            out.append(current)
        elif current is not None:
            current.text += "\n" + line
        else:
            if not indent:                         # a paragraph at the margin ends any list
                items, lead, in_list = [], None, False
            parent = next((u for i, u in reversed(items) if i < indent), None)
            current = prev = Unit(n, line, parent)
            out.append(current)
    return out


def figures(text: str) -> list[str]:
    """The measured figures of one unit's text (see the rule)."""
    for phrase in DEFINITIONS:
        text = text.replace(phrase, "")
    found = []
    for m in FIGURE.finditer(text):
        if EXEMPT_BEFORE.search(text[:m.start()].rstrip(" (*")):
            continue
        found.append(m.group(0).strip())
    return found


def covered(unit: Unit) -> bool:
    """Whether the unit, or a block it hangs from, names a producing command or says 'estimated'."""
    return any(COMMAND.search(u.text) or "estimated" in u.text for u in unit.chain())


@pytest.mark.parametrize("doc", DOCS)
def test_every_measured_figure_names_its_command(doc):
    text = (REPO / doc).read_text()
    bare = [f"{doc}:{u.line}: {figures(u.text)}" for u in units(text) if figures(u.text) and not covered(u)]
    assert not bare, "figures without a producing command (tests/test_doc_figures.py states the rule):\n" + \
        "\n".join(bare)


def test_the_rule_reads_what_it_says():
    """Each part of the rule on a small text: a bare figure fails, a command covers it in its
    paragraph, row caption or list lead-in; thresholds, paper values and definitions need none."""
    text = """A bare run gave 2.14 nats.

Measured with `snakemake --cores 2 all`: 2.14 ± 0.09 nats.

Table (`python -m vaegaps.bench`):

| a | b |
|---|---|
| x | 3.1× |

Not a caption.

| a | b |
|---|---|
| x | 4 CPU-s |

The times (`python -m vaegaps.bench`):

* first 12 min
  * nested 3%

A gap > 2 nats, more than 10 % of points, the paper's 1.2 nats, the BDMC pass mark (0.5 nats),
and 16 × 300 chains are no measurements.

* a lone item: 7 s
"""
    bad = [(u.line, figures(u.text)) for u in units(text) if figures(u.text) and not covered(u)]
    assert bad == [(1, ["2.14 nats"]), (15, ["4 CPU-s"]), (25, ["7 s"])]


def test_repository_refers_to_nothing_outside_itself():
    """The package explains itself (README, docs/method.md, code, rules): no text points at the
    steering folder or its protocol file, which a user of the repository does not have."""
    hits = [str(p) for base in ("README.md", "src", "workflow", "config.yaml", "docs")
            for p in ([REPO / base] if (REPO / base).is_file() else (REPO / base).rglob("*"))
            if p.is_file() and "egg-info" not in str(p) and p.suffix in (".md", ".py", ".smk", ".yaml", ".rst", "")
            and re.search(r"shared/|PROTOCOL", p.read_text(errors="ignore"))]
    assert not hits, hits
