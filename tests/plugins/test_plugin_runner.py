"""
Integration tests for plugin process runner
"""
import pytest
import asyncio
from pathlib import Path

from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.core.event_bus import initialize_event_bus, shutdown_event_bus
from bot.rosey.core.subjects import Subjects


@pytest.fixture
async def event_bus():
    """Setup event bus for testing"""
    bus = await initialize_event_bus()
    yield bus
    await shutdown_event_bus()


@pytest.mark.asyncio
async def test_plugin_start_stop(event_bus):
    """Test starting and stopping plugin process"""
    
    # Path to echo plugin
    plugin_path = Path("bot/rosey/plugins/examples/echo_plugin.py")
    
    if not plugin_path.exists():
        pytest.skip(f"Plugin not found: {plugin_path}")
    
    # Create runner
    runner = PluginProcess("echo", str(plugin_path))
    
    # Start
    await runner.start()
    assert runner.is_running()
    
    # Check stats
    stats = runner.get_stats()
    assert stats["running"] is True
    assert stats["pid"] is not None
    assert stats["memory_mb"] > 0
    
    # Wait a moment
    await asyncio.sleep(1)
    
    # Stop
    await runner.stop()
    assert not runner.is_running()


@pytest.mark.asyncio
async def test_plugin_receives_command(event_bus):
    """Test plugin receives and responds to command"""
    
    plugin_path = Path("bot/rosey/plugins/examples/echo_plugin.py")
    if not plugin_path.exists():
        pytest.skip(f"Plugin not found: {plugin_path}")
    
    # Start plugin
    runner = PluginProcess("echo", str(plugin_path))
    await runner.start()
    
    try:
        # Give plugin time to connect
        await asyncio.sleep(2)
        
        # Setup result listener
        results = []
        
        async def result_handler(event):
            results.append(event)
        
        await event_bus.subscribe(
            Subjects.plugin_command("echo", "result"),
            result_handler
        )
        
        # Send command
        await event_bus.publish(
            Subjects.plugin_command("echo", "execute"),
            data={"args": ["hello", "world"]},
            source="test"
        )
        
        # Wait for response
        await asyncio.sleep(1)
        
        # Check result
        assert len(results) > 0
        result = results[0]
        assert "hello world" in result.data.get("message", "").lower()
    
    finally:
        await runner.stop()


if __name__ == "__main__":
    pytest.main([__file__, "-v"])
