"""Host-side services on the bus, one pattern (``base``): requests on a service's subjects, one
reply each. ``router`` turns chat commands into plugin requests; ``control`` serves the CLI.
Storage, the HTTP gateway and files will live here too.
"""
