"""Enrichment: entities in item text."""
