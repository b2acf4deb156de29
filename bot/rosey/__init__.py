"""Rosey: a chat bot whose plugins each run in their own process and talk to the bot only over NATS.

Keep this module free of imports: every plugin process imports the ``bot.rosey`` package, and
whatever is imported here is paid for at each plugin start-up.
"""

__version__ = "0.1.0"
