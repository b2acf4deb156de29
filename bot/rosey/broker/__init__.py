"""The broker: the embedded nats-server (``nats_server``) and who may say what on it (``identities``).

Host-only. Every identity (the core, each plugin) is generated before the server starts, and
the server enforces each one's grants: a plugin's reach on the bus is the server's decision,
never the plugin's good will.
"""
