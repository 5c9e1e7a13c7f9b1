"""Raw tables in: one module per source, plus a registry (``load``, ``registered``).

Registered loaders: ``synthetic`` (generated), ``kdd99``, ``nsl-kdd``, ``unsw-nb15``,
``cicids2017`` and ``tabular`` (any labelled CSV/Parquet). Every loader takes keyword options,
at least ``root`` (where the files are), ``scheme`` (the label scheme) and ``seed``, and returns a
:class:`Dataset` whose tables hold the schema's features plus the ``label`` column (strings).
Nothing is downloaded here; ``advsec data fetch`` (:mod:`advsec.datasets.fetch`) does that on
request.
"""

from __future__ import annotations

from advsec.datasets import (  # noqa: F401  (each module registers its loader)
    cicids2017,
    kdd99,
    nslkdd,
    synthetic,
    tabular,
    unswnb15,
)
from advsec.datasets.base import Dataset, DatasetInfo, get_loader, load, register, registered

__all__ = ["Dataset", "DatasetInfo", "get_loader", "load", "register", "registered"]
