"""Dagster glue: asset graphs, checks, schedules built from connection files."""
