"""``advsec data``: list the dataset loaders, describe a dataset, fetch its files, infer the
schema of a table file (``advsec data schema FILE --label-column COL``).

Errors (a missing file, a malformed row, an unknown dataset) are raised as
:class:`~advsec.errors.AdvsecError`; the main app prints them as one line and exits with code 2.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from advsec.cli.common import cli_delimiter, console, err_console, table_file
from advsec.datasets import Dataset, get_loader, load, registered
from advsec.datasets.fetch import SOURCES, fetch
from advsec.datasets.inference import describe_features
from advsec.datasets.tabular import FileSchema, infer_file_schema
from advsec.errors import ConfigError
from advsec.features.schema import FeatureKind
from advsec.features.schema_toml import schema_to_toml
from advsec.runio import write_text

__all__ = ["app", "dataset_summary", "schema_file_text"]

app = typer.Typer(
    help="Datasets: list the loaders, show rows and classes of one, fetch its files, infer the "
         "schema of a table file.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)



@app.command("list")
def list_command() -> None:
    """List the registered datasets, their files and where to get them."""
    table = Table(title="datasets", show_lines=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description and files")
    table.add_column("get it", overflow="fold")
    for name, info in sorted(registered().items()):
        src = SOURCES.get(name)
        if src is None:
            how = "-"
        elif src.fetchable:
            how = f"advsec data fetch {name}"
        else:
            how = f"download from {src.page}"
        files = f"\nfiles: {', '.join(info.files)}" if info.files else ""
        table.add_row(name, f"{info.description}{files}", how)
    console.print(table)


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="A registered dataset (see `advsec data list`), or a "
                               "CSV/Parquet file to read with the tabular loader."),
    root: Path | None = typer.Option(None, "--root", help="Folder with the dataset's files "
                                     "(default: $ADVSEC_DATA, then the fetch cache)."),
    scheme: str = typer.Option("binary", "--scheme", help="Label scheme: binary, category or "
                               "attack (which ones a dataset offers depends on it)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/test split, where one is made."),
    label_column: str | None = typer.Option(None, "--label-column",
                                            help="Tabular data: the label column."),
    benign_label: str | None = typer.Option(None, "--benign-label",
                                            help="Tabular data: the benign label value."),
    schema: Path | None = typer.Option(None, "--schema", help="A TOML/YAML schema file that "
                                       "changes or replaces the feature schema."),
    test: Path | None = typer.Option(None, "--test", help="Tabular data: a separate test file."),
    delimiter: str | None = typer.Option(None, "--delimiter", help="Tabular data: the CSV "
                                         "field separator (default ',')."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    show_schema: bool = typer.Option(False, "--show-schema", help="Print the feature schema in "
                                     "effect as a TOML schema file instead of the summary."),
) -> None:
    """Rows, columns, features and class counts of the train and test splits of a dataset."""
    if as_json and show_schema:
        raise ConfigError("--json and --show-schema: choose one (the summary as JSON, or the "
                          "schema as TOML)")
    options: dict[str, Any] = {"scheme": scheme, "seed": seed}
    if schema is not None:
        options["schema_file"] = schema
    path = table_file(name)
    if path is not None:
        name, options["path"] = "tabular", path
    elif root is not None:
        options["root"] = root
    if name == "tabular":
        if root is not None and "path" not in options:
            options["path"] = root
        if label_column is not None:
            options["label_column"] = label_column
        if benign_label is not None:
            options["benign_label"] = benign_label
        if test is not None:
            options["test_path"] = test
        if delimiter is not None:
            options["delimiter"] = cli_delimiter(delimiter)
    elif delimiter is not None:
        raise ConfigError(f"--delimiter: only for CSV files; {name!r} is a registered dataset "
                          f"with its own format")
    get_loader(name)
    ds = load(name, **options)
    if show_schema:
        header = [f"Feature schema in effect for dataset {ds.name!r} (scheme {ds.scheme!r}; "
                  f"{len(ds.train):,} training and {len(ds.test):,} test rows), written by "
                  "`advsec data info --show-schema`", "notes:", *[f"  - {n}" for n in ds.notes]]
        typer.echo(schema_to_toml(ds.schema, header=header,
                                  feature_notes=describe_features(ds.train, ds.schema)), nl=False)
        return
    summary = dataset_summary(ds)
    if as_json:
        console.print_json(json.dumps(summary))
        return
    _print_summary(summary)


@app.command("fetch")
def fetch_command(
    name: str = typer.Argument(..., help="Dataset to download (see `advsec data list`)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Where to store the files "
                                          "(default: $ADVSEC_DATA, else ~/.cache/advsec/"
                                          "datasets); a NAME subfolder is created."),
    timeout: float = typer.Option(60.0, "--timeout", help="Network timeout per file (s)."),
) -> None:
    """Download a dataset's files from the official location and check their SHA-256."""
    paths = fetch(name, cache_dir=cache_dir, timeout=timeout)
    for p in paths:
        console.print(f"{p}", markup=False, highlight=False)
    console.print(f"use: advsec data info {name} --root {paths[0].parent}", markup=False,
                  highlight=False)


@app.command("schema")
def schema_command(
    file: Path = typer.Argument(..., help="A CSV (plain or gzip) or Parquet table with a header."),
    label_column: str = typer.Option(..., "--label-column", help="The label column."),
    benign_label: str | None = typer.Option(None, "--benign-label", help="The benign label "
                                            "value (default: guessed among benign, normal, 0)."),
    out: Path | None = typer.Option(None, "--out", help="Write the schema to this .toml file "
                                    "(default: print it)."),
    max_categories: int = typer.Option(100, "--max-categories", help="Text columns with more "
                                       "distinct values are left out."),
    delimiter: str = typer.Option(",", "--delimiter", help="The CSV field separator."),
    no_discover: bool = typer.Option(False, "--no-discover", help="Skip constraint discovery "
                                     "(relations and value sets)."),
) -> None:
    """Infer the feature schema of a whole table file (kinds, bounds, left-out columns,
    relations) and write it as a commented TOML schema file to edit and pass back as --schema."""
    if max_categories < 0:
        raise ConfigError(f"--max-categories: expected an integer >= 0, got {max_categories}")
    if out is not None:
        _check_out(out, source=file)
    found = infer_file_schema(file, label_column=label_column, benign_label=benign_label,
                              delimiter=str(cli_delimiter(delimiter)),
                              max_categories=max_categories,
                              discover=not no_discover)
    text = schema_file_text(found)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)
    for line in _schema_summary(found, out):
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def schema_file_text(found: FileSchema) -> str:
    """The commented TOML schema file of an inferred file schema (:func:`schema_to_toml`)."""
    s = found.schema
    header = [f"Feature schema of {found.path} ({found.rows:,} rows; label column {s.label!r}, "
              f"benign label {s.benign_label!r}), inferred from the whole file by "
              "`advsec data schema` (rules: advsec.datasets.inference)", "notes:",
              *[f"  - {n}" for n in found.notes]]
    return schema_to_toml(s, header=header, feature_notes=found.feature_notes,
                          candidates=found.candidates)


def _check_out(out: Path, *, source: Path) -> None:
    """A ConfigError unless ``out`` can take the schema file (checked before any reading)."""
    if out.suffix.lower() != ".toml":
        raise ConfigError(f"--out {out}: the schema file must end in .toml")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a directory, expected a .toml file path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--out {out}: folder {parent} is not writable")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"--out {out}: is the input table itself")


def _schema_summary(found: FileSchema, out: Path | None) -> list[str]:
    kinds = Counter(f.kind.value for f in found.schema)
    by_kind = ", ".join(f"{kinds[k.value]} {k.value}" for k in FeatureKind if kinds[k.value])
    lines = [f"{found.path}: {found.rows:,} rows; {len(found.schema)} features kept "
             f"({by_kind}); {sum(not f.mutable for f in found.schema)} immutable"]
    dropped = [n for n in found.notes if n.startswith("column ") and " left out: " in n]
    lines += [f"  {n}" for n in dropped] or ["  no column left out"]
    with_sets = sum(f.values is not None for f in found.schema)
    rels = found.schema.relations
    partial = sum(r.get("holds_on", 1.0) < 1.0 for r in rels)
    lines.append(f"relations: {len(rels)} enforced ({len(rels) - partial} hold on every row, "
                 f"{partial} derived values on most rows, with their holds_on), "
                 f"{len(found.candidates)} candidate(s) written commented out; value sets: "
                 f"{with_sets} feature(s)")
    lines.append(f"schema written to {out}" if out is not None else
                 "schema printed above (use --out FILE.toml to write it)")
    return lines


def dataset_summary(ds: Dataset) -> dict[str, Any]:
    """A JSON-friendly description of a loaded dataset: rows, columns, features, class counts."""
    kinds = {k.value: sum(1 for f in ds.schema if f.kind is k) for k in FeatureKind}
    splits = {}
    for split in ("train", "test"):
        table = getattr(ds, split)
        counts = table[ds.label].astype(str).value_counts()
        splits[split] = {
            "rows": len(table),
            "columns": table.shape[1],
            "classes": {c: int(counts.get(c, 0)) for c in ds.classes},
        }
    return {
        "name": ds.name,
        "scheme": ds.scheme,
        "label": ds.label,
        "benign_label": ds.benign_label,
        "features": len(ds.schema),
        "feature_kinds": kinds,
        "immutable": [f.name for f in ds.schema if not f.mutable],
        "relations": len(ds.schema.relations),
        "classes": list(ds.classes),
        "splits": splits,
        "notes": list(ds.notes),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    kinds = ", ".join(f"{v} {k}" for k, v in summary["feature_kinds"].items() if v)
    console.print(f"[bold]{summary['name']}[/bold]  scheme={summary['scheme']}  "
                  f"label={summary['label']!r}  benign={summary['benign_label']!r}")
    console.print(f"features: {summary['features']} ({kinds}); immutable: "
                  f"{', '.join(summary['immutable']) or '-'}; relations: {summary['relations']}",
                  markup=False, highlight=False)
    splits = summary["splits"]
    table = Table(title="rows and classes")
    table.add_column("", style="bold")
    for split in (*splits, "total"):
        table.add_column(split, justify="right")
    rows = [s["rows"] for s in splits.values()]
    table.add_row("rows", *[f"{r:,}" for r in (*rows, sum(rows))])
    table.add_row("columns", *[str(s["columns"]) for s in splits.values()], "")
    for cls in summary["classes"]:
        counts = [s["classes"].get(cls, 0) for s in splits.values()]
        table.add_row(cls, *[f"{c:,}" for c in (*counts, sum(counts))])
    console.print(table)
    for note in summary["notes"]:
        console.print(f"- {note}", markup=False, highlight=False)
