"""The wire: events, subjects and the bus. Imported by the host and by every plugin process,
so it imports nothing of Rosey but ``errors``."""
