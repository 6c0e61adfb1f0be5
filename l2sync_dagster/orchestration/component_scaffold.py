"""What ``dg scaffold defs l2sync_dagster.orchestration.component.L2SyncConnections NAME``
writes: a ``defs.yaml`` using the component on ``connections/``, an example connection that
copies a small CSV file into a Parquet file, and that CSV file, so the new graph runs at once.
"""

from pathlib import Path

import dagster as dg

EXAMPLE_NAME = "example_contacts"

EXAMPLE_CONNECTION = """\
# An example connection written by `dg scaffold defs ... L2SyncConnections`: it copies
# data/example_contacts.csv into data/example_contacts.parquet (one way). Relative paths start
# at the folder that holds connections/. Replace it with your own connections; the fields are
# described in the l2sync-dagster README.
title: Example contacts (CSV -> Parquet)
direction: left_to_right
left:
  provider: file
  connection_string: "Path=data/example_contacts.csv"
  key: id
right:
  provider: file
  connection_string: "Path=data/example_contacts.parquet"
  key: id
mapping:
  auto: true                   # id, name, email pair by name
deletes: {propagate: true, max_fraction: 0.5}
"""

EXAMPLE_CSV = """\
id,name,email
1,Ada Lovelace,ada@example.com
2,Grace Hopper,grace@example.com
3,Alan Turing,alan@example.com
"""


class L2SyncConnectionsScaffolder(dg.Scaffolder):
    """Writes defs.yaml, connections/example_contacts.yaml and data/example_contacts.csv."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        """Write the component's files into ``request.target_path`` (never overwriting)."""
        target = Path(request.target_path)
        dg.scaffold_component(request, {"path": "connections"})
        _write_new(target / "connections" / f"{EXAMPLE_NAME}.yaml", EXAMPLE_CONNECTION)
        _write_new(target / "data" / f"{EXAMPLE_NAME}.csv", EXAMPLE_CSV)


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless the file exists (a user's file is never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text, encoding="utf-8")
