"""The sync engine: mapping, canonical values, reconciliation and plans. No Dagster, no I/O."""
