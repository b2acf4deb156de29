"""
Echo plugin - Simple example demonstrating PluginInterface

Responds to any command by echoing it back
"""
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin
from bot.rosey.core.events import Event


class EchoPlugin(PluginInterface):
    """
    Echo plugin - Repeats commands back to user

    Usage:
        !echo hello world
        -> Bot: "Echo: hello world"
    """

    # Optional: declares the command for !help (nothing else changes: handle_command still runs).
    commands = (Command("echo", usage="[text...]", help="Repeat your words back"),)

    @property
    def plugin_name(self) -> str:
        return "echo"

    async def on_start(self):
        """Initialize plugin"""
        print(f"🔊 Echo plugin starting...")
        self.echo_count = 0

    async def handle_command(self, event: Event):
        """
        Handle echo command

        Takes any input and echoes it back
        """
        data = event.data
        args = data.get("args", [])

        # Increment counter
        self.echo_count += 1

        # Build echo message
        if args:
            echo_text = " ".join(args)
            message = f"🔊 Echo #{self.echo_count}: {echo_text}"
        else:
            message = "🔊 Echo: (nothing to echo)"

        # Send response
        await self.publish_result({
            "message": message,
            "count": self.echo_count
        }, event.correlation_id)

    async def on_stop(self):
        """Cleanup on shutdown"""
        print(f"🔊 Echo plugin stopping... (echoed {self.echo_count} messages)")


if __name__ == "__main__":
    run_plugin(EchoPlugin)
