"""This repository as a ``dg`` project: its connections/ loaded through the L2SyncConnections
component (``dg check defs``, ``dg dev``). ``definitions.py`` at the root builds the same graphs
with the plain factory for ``dagster dev -f definitions.py``."""
