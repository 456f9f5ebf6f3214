"""Everyday words that are also names, for the matcher's capital rule.

A rule term written with a capital is a name (Буда, Мирне, Щастя), and some of its surface forms are
also ordinary words: Буда's case form «буде» is "will be", «мирне» is "peaceful". The matcher counts
such a form only where the text writes it with a capital (``CompiledRules(common_words=...)``). The
lists are the gazetteer's curated ones (``common_words`` and ``common_forms`` in
``monitor/enrich/data/places_extra.yaml``, generated from Hunspell dictionaries and word frequencies),
so place names are judged the same way in alerting and in entity extraction.
"""

from __future__ import annotations

import functools


@functools.cache
def common_words() -> frozenset[str]:
    """The folded everyday words that names may be (read once per process), as the gazetteer reads them:
    ``common_words`` and ``common_forms``, less ``not_common``."""
    from monitor.enrich.gazetteer import load_extra  # noqa: PLC0415 - only when an engine is built

    extra = load_extra()
    return frozenset((extra.common_words | extra.common_forms) - extra.not_common - {""})
