"""``advsec data``: list the dataset loaders, describe a dataset, fetch its files.

Errors (a missing file, a malformed row, an unknown dataset) are raised as
:class:`~advsec.errors.AdvsecError`; the main app prints them as one line and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from advsec.cli.common import console
from advsec.datasets import Dataset, get_loader, load, registered
from advsec.datasets.fetch import SOURCES, fetch
from advsec.features.schema import FeatureKind

__all__ = ["app", "dataset_summary"]

app = typer.Typer(
    help="Datasets: list the loaders, show rows and classes of one, fetch its files.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

_TABLE_SUFFIXES = (".csv", ".gz", ".parquet", ".pq", ".tsv", ".txt")


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
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Rows, columns, features and class counts of the train and test splits of a dataset."""
    options: dict[str, Any] = {"scheme": scheme, "seed": seed}
    if schema is not None:
        options["schema_file"] = schema
    path = Path(name).expanduser()
    if name not in registered() and (path.is_file() or path.suffix.lower() in _TABLE_SUFFIXES):
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
    get_loader(name)
    ds = load(name, **options)
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
