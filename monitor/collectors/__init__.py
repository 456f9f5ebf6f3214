"""Collectors: each source turns what it reads into RawItems on the raw stream."""
