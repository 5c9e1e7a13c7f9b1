"""Experiments: configurations, run directories and complete studies."""

from __future__ import annotations
