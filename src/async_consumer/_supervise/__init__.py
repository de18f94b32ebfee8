"""Watching a running script: its process group, heartbeat, metrics, output and watchdog."""
