"""The code location ``dg`` loads: every component under ``l2sync_dagster_defs/defs/``."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """The definitions of the project's defs folder."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
