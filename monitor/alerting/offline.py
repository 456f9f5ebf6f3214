"""``monitor match``: the normalizer and the rules on one text, offline, with no Redis.

The text is turned into a corpus RawItem exactly as an ingested article file would be, so the alerts
printed here are the ones the pipeline raises for the same text.
"""

from __future__ import annotations

from monitor.alerting.engine import AlertEngine
from monitor.collectors.corpus_files import article_from_text
from monitor.config import Settings
from monitor.normalize.normalizer import Normalizer
from monitor.schema import Alert, Item

MATCH_CHANNEL = "match"


def normalize_text(text: str, settings: Settings, *, channel: str = MATCH_CHANNEL) -> Item:
    """The Item the pipeline would build for ``text`` as a corpus article."""
    raw, _ = article_from_text(text, channel=channel, max_text_chars=settings.collectors.corpus.max_text_chars)
    return Normalizer(settings.normalizer).normalize(raw)


def match_text(text: str, settings: Settings, *, channel: str = MATCH_CHANNEL) -> list[Alert]:
    """The alerts ``text`` raises under the configured rules."""
    return AlertEngine(settings.rules).evaluate(normalize_text(text, settings, channel=channel))
