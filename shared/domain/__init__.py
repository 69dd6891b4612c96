"""The domain: progress arithmetic, the catalog, class analytics. Pure, no I/O."""
