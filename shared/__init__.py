"""What the ingest API and the workers both import: settings, progress arithmetic, stores."""
