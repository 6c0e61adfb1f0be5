"""One sync run: extract, reconcile, apply in batches, commit the archive."""
