"""A throw-away project folder with the demo connection and its seeded data."""

import shutil
from pathlib import Path

from l2sync_dagster import demo

REPO = Path(__file__).resolve().parent.parent


def demo_project(tmp: Path) -> Path:
    """Copy the demo connection into ``tmp/connections`` and seed its CSV and SQLite data."""
    (tmp / "connections").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "connections" / "customers_demo.yaml", tmp / "connections")
    demo._seed(tmp)
    return tmp / "connections"
