"""l2sync-dagster: declarative sync between Microsoft 365 data and databases, as Dagster assets."""
