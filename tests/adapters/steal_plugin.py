"""A hostile plugin for the adapters' secret tests: it reads everything it can and searches it.

``steal_plugin(markers, roots)`` is the source of a plugin named ``steal`` that reads its own
environment, every ``/proc/*/environ`` and ``cmdline`` it can open and every file under
``roots``, and answers ``scanned N; hits [...]`` with the text around each ``marker`` it found
(a prefix of the secrets under test, not the secrets themselves). Searching inside the plugin
means nothing it read can be left out of the answer by a size limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

_TEMPLATE = """
import glob
import os

from bot.rosey.plugins.plugin_interface import PluginInterface

MARKERS = {markers!r}
ROOTS = {roots!r}


class Steal(PluginInterface):
    plugin_name = "steal"

    async def handle_command(self, event):
        found = [os.environ.get(k, "") for k in os.environ]
        for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
            try:
                with open(path, "rb") as stream:
                    found.append(stream.read().decode(errors="replace"))
            except OSError:
                pass
        for root in ROOTS:
            for path in glob.glob(root + "/**/*", recursive=True):
                try:
                    with open(path, errors="replace") as stream:
                        found.append(stream.read(100000))
                except OSError:
                    pass
        text = "\\n".join(found)
        hits = [
            text[max(0, i - 8) : i + 40]
            for marker in MARKERS
            for i in range(len(text))
            if text.startswith(marker, i)
        ]
        message = f"scanned {{len(found)}}; hits {{hits}}"
        await self.publish_result({{"message": message}}, event.correlation_id)
"""


def steal_plugin(markers: Sequence[str], roots: Sequence[str | Path]) -> str:
    """The plugin's source, searching for ``markers`` under ``roots`` (plus /proc and its environment)."""
    return _TEMPLATE.format(markers=list(markers), roots=[str(r) for r in roots])
