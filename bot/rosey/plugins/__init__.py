"""Plugins: the SDK plugin authors import, and the host side that runs plugins in processes.

Inside a plugin process: ``plugin_interface`` (the SDK), ``launcher`` and ``zygote_child`` (the
first code a plugin process runs), ``sandbox/`` (applied by the process to itself before plugin
code), ``contract`` (what host and plugin process agree on). On the host: ``plugin_runner``
(``PluginProcess``), ``plugin_registry`` (static discovery) and ``process/``.

Deliberately empty of imports: a plugin process imports this package, and the host-side
modules must never be paid for, or reachable, from there.
"""
