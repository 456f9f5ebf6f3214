"""RawItem -> Item: the same cleaning for every source, so corpus articles and live posts compare.

A title that the text does not already start with (a feed entry's headline) is put in front of the
text, so rules match headlines too.

Steps: NFKC and control/zero-width/bidi removal with whitespace and punctuation folding
(``text.clean_text``), boilerplate removal (``boilerplate.strip_boilerplate``; what was removed is
logged at debug level), truncation at ``normalizer.max_text_chars`` (logged, never silent), language
ID, a content hash over the folded text, and the item id ``platform:channel_key:external_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from monitor.config import NormalizerSettings
from monitor.enrich.enricher import Enricher
from monitor.normalize.boilerplate import strip_boilerplate
from monitor.normalize.lang import detect_language
from monitor.normalize.text import clean_text
from monitor.schema import Entities, Item, RawItem, item_id, short_hash, utcnow

log = structlog.get_logger(__name__)


def content_hash(text: str) -> str:
    """Hash of the case-folded text with whitespace collapsed, so reflowing or recasing doesn't change it."""
    return short_hash(" ".join(text.casefold().split()))


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a whitespace boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", max(0, limit - 200), limit)
    return text[: cut if cut > 0 else limit].rstrip()


class Normalizer:
    """Pure and synchronous: the stage worker and ``monitor match`` both call it."""

    def __init__(
        self, settings: NormalizerSettings | None = None, *, warm: bool = False, enricher: Enricher | None = None
    ) -> None:
        self.settings = settings or NormalizerSettings()
        self.enricher = enricher
        if self.enricher is None and self.settings.enrich:
            self.enricher = Enricher.load()
        if warm:  # load the language model now, not on the first item (it takes about a second)
            detect_language("warm-up text for the language model", self.settings.lang_detect_chars)

    def normalize(self, raw: RawItem) -> Item:
        """Build the Item for one RawItem."""
        item = self._core(raw)
        if self.enricher is not None and item.text:
            item.entities = self.enricher.enrich(item.text, lang=item.lang, channel=raw.channel)
        return item

    def normalize_many(self, raws: Sequence[RawItem], *, enrich: bool = True) -> list[Item | Exception]:
        """``normalize`` for a batch, each result (or the error it raised) in its RawItem's place.

        The cleaning steps run item by item, then the enricher takes the whole batch, one extractor at
        a time (see ``Enricher.enrich_many``), which costs about a quarter less CPU than enriching each
        item as it is cleaned. ``enrich=False`` leaves that to a later ``enrich_items`` call.
        """
        results: list[Item | Exception] = []
        for raw in raws:
            try:
                results.append(self._core(raw))
            except Exception as exc:  # noqa: BLE001 - one item's failure is its own, not the batch's
                results.append(exc)
        if enrich:
            self.enrich_items(results)
        return results

    def enrich_items(self, results: list[Item | Exception]) -> None:
        """Fill in the entities of the Items among ``results``; an Item whose enrichment fails is replaced
        there by its error. Nothing to do when enrichment is off."""
        if self.enricher is None:
            return
        pending = [(n, item) for n, item in enumerate(results) if isinstance(item, Item) and item.text]
        texts, langs = [item.text for _, item in pending], [item.lang for _, item in pending]
        found = self.enricher.enrich_many(texts, langs, [item.channel for _, item in pending])
        for (n, item), entities in zip(pending, found, strict=True):
            if isinstance(entities, Exception):
                results[n] = entities
            else:
                item.entities = entities

    def _core(self, raw: RawItem) -> Item:
        """The Item without entities: cleaning, boilerplate, truncation, title, language, hashes."""
        the_id = item_id(raw)
        text = clean_text(raw.text)
        if self.settings.strip_boilerplate and text:
            result = strip_boilerplate(text)
            if result.removed:
                log.debug("boilerplate removed", item_id=the_id, removed=result.removed)
            text = result.text
        if len(text) > self.settings.max_text_chars:
            log.warning(
                "item text truncated",
                item_id=the_id,
                chars=len(text),
                limit=self.settings.max_text_chars,
                setting="normalizer.max_text_chars",
            )
            text = truncate(text, self.settings.max_text_chars)
        title = clean_text(raw.title) if raw.title else None
        if title and title.casefold() not in text[: len(title) + 500].casefold():
            # A headline that is not part of the body (feed entries) is matched and read with it.
            text = f"{title}\n\n{text}" if text else title
        lang = detect_language(text or (title or ""), self.settings.lang_detect_chars)
        return Item(
            id=the_id,
            source=raw.source,
            channel=raw.channel,
            external_id=raw.external_id,
            text=text,
            collected_at=raw.collected_at,
            lang=lang,
            content_hash=content_hash(text),
            url=raw.url,
            published_at=raw.published_at,
            author=raw.author,
            title=title,
            event=raw.event,
            forwarded_from=raw.forwarded_from,
            reply_to=raw.reply_to,
            media=raw.media,
            metrics=raw.metrics,
            channel_id=raw.channel_id,
            entities=Entities(),
            normalized_at=utcnow(),
        )
