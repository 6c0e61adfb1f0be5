"""Providers: one module per system, found by name through entry points."""
