"""Example plugins shipped with Rosey."""
