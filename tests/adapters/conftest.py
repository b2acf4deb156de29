"""Platform adapters against real chat servers started on loopback (module-scoped fixtures).

Each platform keeps its server fixture in its own module (``irc_server.py``, ``matrix_server.py``,
``cytube_server.py``); a test module imports the fixtures it uses.
"""
