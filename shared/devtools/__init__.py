"""Tooling for people: the CLI, the dev supervisor, the demo catalog. The workers never import
it; the web process imports only the demo users, and only under development settings."""
