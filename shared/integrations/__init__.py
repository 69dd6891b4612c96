"""Connections to the school's other systems: xAPI statements to an LRS, signed completion
webhooks, and the durable Redis outbox both are delivered from."""
