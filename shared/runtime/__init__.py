"""Process set-up shared by the web and worker processes: logging and GC tuning."""
