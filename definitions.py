"""What `dagster dev` loads: one asset graph per file in connections/."""

from pathlib import Path

from l2sync_dagster.orchestration.definitions import build_definitions

defs = build_definitions(Path(__file__).resolve().parent / "connections")
