"""Notification sinks fed from the alerts stream."""
