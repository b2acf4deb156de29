"""The host's side of a plugin process, behind ``PluginProcess``: how it is launched
(``launchers``, ``zygote``), what its environment holds (``environment``), how its exit is seen
(``child_exit``) and its output kept (``output``). Never imported by plugin processes.
"""
