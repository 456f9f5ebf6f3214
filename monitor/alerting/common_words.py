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
from pathlib import Path

import yaml

from monitor.alerting.matcher import fold_term

DATA_FILE = Path(__file__).resolve().parents[1] / "enrich" / "data" / "places_extra.yaml"


@functools.cache
def common_words(path: Path = DATA_FILE) -> frozenset[str]:
    """The folded everyday words that names may be (read once per process; ~30 ms)."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    words = {fold_term(str(word)) for key in ("common_words", "common_forms") for word in data.get(key) or []}
    words -= {fold_term(str(word)) for word in data.get("not_common") or []}
    words.discard("")
    return frozenset(words)
