"""Raw tables in: one module per source, plus a registry (``load``, ``registered``)."""

from __future__ import annotations

from advsec.datasets import synthetic  # noqa: F401  (registers "synthetic")
from advsec.datasets.base import Dataset, DatasetInfo, get_loader, load, register, registered

__all__ = ["Dataset", "DatasetInfo", "get_loader", "load", "register", "registered"]
