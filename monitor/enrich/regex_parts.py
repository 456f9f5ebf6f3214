"""Small helpers that read the structure of the extractors' own regex sources (for their prescans)."""

from __future__ import annotations


def top_level_alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a regex (split on "|" outside parentheses and brackets)."""
    parts: list[str] = []
    current: list[str] = []
    depth, in_class, escaped = 0, False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
