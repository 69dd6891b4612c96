"""RQ jobs: flush buffered heartbeats to MongoDB, record completions, maintenance."""
