"""Files tests: the real RoseyApp (``start_rosey``, both launchers) with the files fixture plugin,
and a console on the core's observer connection to chat with it as an operator would."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

from bot.rosey.adapters.console import ConsoleAdapter
from tests.security.conftest import Rosey, launcher, start_rosey  # noqa: F401  (fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
FILES_PLUGIN = FIXTURES / "files_plugin.py"


async def console_chat(rosey: Rosey, *lines: str, timeout: float = 30.0) -> str:
    """Say ``lines`` on the console (as the operator's terminal would) and return what it printed
    once every command was answered."""
    read, write = os.pipe()
    output = io.StringIO()
    with os.fdopen(read, "rb", buffering=0) as stream:
        adapter = ConsoleAdapter(rosey.core, input_stream=stream, output=output, reply_wait=timeout)
        os.write(write, ("\n".join(lines) + "\n").encode())
        os.close(write)
        await asyncio.wait_for(adapter.run(), timeout + 5)
    return output.getvalue()
