"""Supervision: what should run (``spec``), when to restart (``restart``, a pure decision), the
loop that carries it out (``supervisor``), the watch beside it (``watchdog``), what it reports
(``status``, ``lifecycle`` events).

It supervises the processes it is handed and knows nothing of how they were configured or what
else runs beside it: it never imports config, services, broker, app or cli.
"""
