"""reStructuredText extensions for the report captions (workflow/report/*.rst), registered with
docutils by workflow/rules/report.smk in the process that runs `snakemake --report`.

* ``.. vaegaps-table:: PATH`` puts a table of this run into the caption, so its numbers are read in
  the report, not only downloaded. PATH is a CSV (a value with a ``<column>_se`` partner is shown
  as "value ± se", ``frac_*`` as a percentage, other floats to 2 decimals) or a Markdown pipe table
  (shown as written, e.g. results/table2.md in the paper's layout). Options: ``:columns:`` (names
  to show, in order; comma-separated if a name has spaces), ``:transpose:`` (a CSV with one
  column per row: for tables of few rows and many quantities; ``:key:`` names the columns that
  identify a row, by default the leading text columns). Quantities are named as in
  results/table2.md (`vaegaps.tables` labels).
* ``:setting:`evaluation.*.amortized.n_samples``` prints the setting, fully resolved (per-dataset
  overrides included), of the run that made the numbers the report shows: read from the outputs'
  own provenance (`run_settings`), never from the config of the command that builds the report.
  A ``*`` segment or ``a|b`` alternatives expand over keys; values that differ are labelled by
  their key, e.g. "100 (cifar10), 1000 (mnist)".
"""

from __future__ import annotations

import csv
import functools
import math
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives, roles

# Settings whose values read better as words in a sentence: (last key, value) -> words.
_WORDS = {
    ("init", "encoder"): "the encoder's q(z|x)",
    ("init", "prior"): "the prior N(0, I)",
    ("tuning", "pilot"): "tuned per distribution in a pilot run, then frozen",
    ("tuning", "online"): "adapted online during the run",
}


def setting_text(resolved: dict, path: str) -> str:
    """The value(s) at dotted `path` in the resolved config, as the captions print them."""
    found = [((), resolved)]
    for seg in path.split("."):
        nxt = []
        for labels, node in found:
            if not isinstance(node, dict):
                continue
            keys = sorted(node, key=str) if seg == "*" else [k for k in seg.split("|") if k in node]
            # YAML may have read a numeric key (decoder_capacity models) as an int
            keys = keys or [k for k in node if str(k) == seg]
            expand = seg == "*" or "|" in seg
            nxt += [((*labels, str(k)) if expand else labels, node[k]) for k in keys]
        found = nxt
    if not found:
        raise KeyError(path)
    last = path.rsplit(".", 1)[-1]
    shown = [(" / ".join(labels), _WORDS.get((last, v), v) if isinstance(v, str) else _value(v))
             for labels, v in found]
    values = {v for _, v in shown}
    if len(values) == 1:
        return shown[0][1]
    return ", ".join(f"{v} ({label})" for label, v in shown)


def _value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_value, v))
    return str(v)


def _cell(table: dict, column: str, i: int) -> str:
    raw = table[column][i]
    se = table.get(f"{column}_se")
    try:
        x = float(raw)
    except ValueError:
        return raw
    if raw.strip().lstrip("-").isdigit():
        return raw
    if math.isnan(x):
        return "–"
    if se is not None and se[i] != "":
        return f"{x:.2f} ± {float(se[i]):.2f}"
    if column.startswith("frac_"):
        return f"{x:.0%}"
    return f"{x:.2f}"


# Columns of the other tables that results/table2.md has no label for.
_MORE_LABELS = {
    "n_points": "datapoints",
    "elbo_qstar": "L[q*]",
    "approximation_gap_flow": "Approximation gap (Flow)",
    "frac_qstar_converged": "q* converged",
}


def _label(column: str) -> str:
    from vaegaps.tables import LABELS, TRUST_LABELS

    return {**LABELS, **TRUST_LABELS, **_MORE_LABELS}.get(column, column)


def csv_rows(path: Path, columns: list[str] | None, transpose: bool,
             key: list[str] | None = None) -> list[list[str]]:
    """Header row then body rows of a CSV table, formatted for reading."""
    with open(path, newline="") as f:
        records = list(csv.reader(f))
    header, body = records[0], records[1:]
    table = {c: [r[j] for r in body] for j, c in enumerate(header)}
    shown = columns or [c for c in header if not (c.endswith("_se") and c[:-3] in table)]
    missing = [c for c in [*shown, *(key or [])] if c not in table]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(missing)}")
    cells = {c: [_cell(table, c, i) for i in range(len(body))] for c in shown}
    if not transpose:
        return [[_label(c) for c in shown]] + [[cells[c][i] for c in shown] for i in range(len(body))]
    if key is None:  # the leading text columns (dataset, family, ...) identify a row
        key = []
        for c in header:
            if any(_is_number(v) for v in table[c]):
                break
            key.append(c)
    heads = [" / ".join(table[k][i] for k in key) for i in range(len(body))]
    return [["", *heads]] + [[_label(c), *cells[c]] for c in shown if c not in key]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


_PIPE = re.compile(r"(?<!\\)\|")


def markdown_rows(path: Path, columns: list[str] | None) -> tuple[list[list[str]], list[str]]:
    """The first pipe table of a Markdown file (header row, then body rows) and the text lines
    after it."""
    rows, after = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith("|") and not after:
            cells = [c.strip().replace("\\|", "|") for c in _PIPE.split(line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):  # not the alignment row
                rows.append(cells)
        elif rows and line.strip():
            after.append(line.strip())
    if columns:
        idx = [rows[0].index(c) for c in columns]
        rows = [[r[j] for j in idx] for r in rows]
    return rows, after


def _inline(text: str) -> list[nodes.Node]:
    """Text with Markdown **bold** as strong."""
    parts = re.split(r"\*\*(.+?)\*\*", text)
    return [nodes.strong(text=p) if k % 2 else nodes.Text(p) for k, p in enumerate(parts) if p]


# Cells longer than this wrap (class "wrap" in workflow/report/report.css); numbers never do.
_WRAP_CHARS = 40


def table_node(rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["vaegaps-table"])
    group = nodes.tgroup(cols=len(rows[0]))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in rows[0]]
    for part, chunk in ((nodes.thead(), rows[:1]), (nodes.tbody(), rows[1:])):
        for cells in chunk:
            row = nodes.row()
            for c in cells:
                row += nodes.entry("", nodes.paragraph("", "", *_inline(c)),
                                   classes=["wrap"] if len(c) > _WRAP_CHARS else [])
            part += row
        group += part
    return table


def _names(option: str) -> list[str]:
    """Column names, comma-separated when a name has spaces (Markdown headers), else space-separated."""
    return [n.strip() for n in option.split(",")] if "," in option else option.split()


class TableDirective(Directive):
    required_arguments = 1
    option_spec = {"columns": directives.unchanged, "transpose": directives.flag, "key": directives.unchanged}

    def run(self):
        path = Path(self.arguments[0])
        columns = _names(self.options.get("columns", "")) or None
        try:
            if path.suffix == ".md":
                rows, after = markdown_rows(path, columns)
            else:
                key = _names(self.options.get("key", "")) or None
                rows, after = csv_rows(path, columns, "transpose" in self.options, key), []
        except (OSError, ValueError, IndexError) as exc:
            return [self.state_machine.reporter.error(f"cannot show {path}: {exc}", line=self.lineno)]
        return [table_node(rows), *(nodes.paragraph("", "", *_inline(t)) for t in after)]


def run_settings(results, fallback: dict) -> dict:
    """The resolved settings of the run that made the numbers under `results`: the study recorded
    in the metadata of its newest per-datapoint gaps Parquet (every Table 2 number comes from
    one), else results/config.resolved.yaml (the last run that finished), else `fallback`."""
    import yaml

    from vaegaps.io import read_metadata
    from vaegaps.pipeline.study import resolved_config

    gaps = sorted(Path(results).glob("gaps/**/*.parquet"), key=lambda p: p.stat().st_mtime)
    for path in reversed(gaps):
        study = read_metadata(path).get("study")
        if study:
            return resolved_config(study)
    written = Path(results) / "config.resolved.yaml"
    return yaml.safe_load(written.read_text()) if written.is_file() else fallback


def register(results, fallback: dict) -> None:
    """Make ``vaegaps-table`` and ``:setting:`` known to docutils; settings are read, once, from
    the outputs under `results` (`run_settings`)."""
    resolved = functools.cache(lambda: run_settings(results, fallback))

    def setting_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        try:
            return [nodes.Text(setting_text(resolved(), text))], []
        except KeyError:
            msg = inliner.reporter.error(f"no setting {text!r} in the resolved config", line=lineno)
            return [inliner.problematic(rawtext, rawtext, msg)], [msg]

    directives.register_directive("vaegaps-table", TableDirective)
    roles.register_local_role("setting", setting_role)
