"""Plugins: the SDK plugin authors import, and the host side that runs plugins in processes.

Deliberately empty of imports: a plugin process imports this package, and the host-side
modules (runner, registry, supervisor) must never be paid for, or reachable, from there.
"""
