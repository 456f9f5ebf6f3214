"""Alerting: keyword rules compiled into one multi-pattern matcher, and the alert engine."""
