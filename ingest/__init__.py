"""The FastAPI ingest API: heartbeats in, progress out."""
