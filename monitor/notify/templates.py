"""Notification bodies from Jinja2 templates: a short one for chat apps, a full one for email and webhooks.

Templates run in Jinja2's sandbox with ``StrictUndefined``, so a typo in a variable name is a config
error (``check-config`` renders every template against a sample alert) rather than an empty field at
3 a.m. The variables are documented in the README: every ``Alert`` field, plus ``terms`` (the distinct
rule terms that matched) and ``matches`` (each term with the form and derivation that matched it).
Digests get ``alerts`` (a list of those), ``count``, ``rules`` and ``severity`` (the highest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

from monitor.config import NotifySettings
from monitor.notify.apprise_sink import TemplateKind
from monitor.schema import Alert, Entities, MatchedTerm, Place, Quantity, Unit, claim_label

SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# The built-in templates ship as files beside this module; copy one as a starting point for your own.
BUILT_IN_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAMES = ("title", "short", "full", "digest_title", "digest_short", "digest_full")


def built_in(name: str) -> str:
    """The text of a built-in template."""
    return (BUILT_IN_DIR / f"{name}.j2").read_text(encoding="utf-8")


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=False, keep_trailing_newline=False
    )


@dataclass(frozen=True, slots=True)
class Story:
    """What the notifier knows of an alert's story cluster: how many other posts it has so far, and the
    first of them (the earliest by publication time: item id and time)."""

    reposts: int
    first_item: str | None = None
    first_at: datetime | None = None


def alert_context(alert: Alert, stories: Mapping[str, Story] | None = None) -> dict[str, Any]:
    """The variables one alert gives a template (``stories``: what is known of story clusters, by id)."""
    story = (stories or {}).get(alert.cluster_id or "")
    first = story.first_item if story is not None and story.first_item != alert.item_id else None
    return {
        "cluster_id": alert.cluster_id,
        "reposts": story.reposts if story is not None else 0,
        "story_first": first,  # the story's first post, when it is another one than this alert's
        "story_first_at": _iso(story.first_at) if first and story is not None and story.first_at else None,
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "severity": alert.severity,
        "item_id": alert.item_id,
        "fired_at": _iso(alert.fired_at),
        "published_at": _iso(alert.published_at) if alert.published_at else None,
        "snippet": alert.snippet,
        "source": alert.source,
        "channel": alert.channel,
        "url": alert.url,
        "title": alert.title,
        "lang": alert.lang,
        "terms": list(dict.fromkeys(m.term for m in alert.matched)),
        "matches": [
            {"term": m.term, "form": m.form, "via": m.via, "label": _label(m)}
            for m in {(m.term, m.form, m.via): m for m in alert.matched}.values()
        ],
        **_entity_context(alert.entities),
    }


def _entity_context(entities: Entities | None) -> dict[str, Any]:
    """``places`` (each a dict with ``label``, coordinates and an OpenStreetMap ``map`` link), ``units`` and
    ``people`` (names) and ``claims`` ("3,574 tanks (losses)"): empty lists when the item named none."""
    if entities is None:
        return {"places": [], "units": [], "people": [], "claims": []}
    places = []
    for place in entities.places:
        where = place.admin1 or place.country
        label = place.name + ("?" if place.confidence < 1.0 else "") + (f" ({where})" if where else "")
        has_point = place.lat is not None and place.lon is not None
        places.append(
            {
                "name": place.name,
                "id": place.id,
                "label": label,
                "lat": place.lat,
                "lon": place.lon,
                "admin1": place.admin1,
                "country": place.country,
                "confidence": place.confidence,
                "map": f"https://www.openstreetmap.org/?mlat={place.lat}&mlon={place.lon}#map=12/{place.lat}/{place.lon}"
                if has_point
                else None,
            }
        )
    return {
        "places": places,
        "units": [unit.name for unit in entities.units],
        "people": [person.name for person in entities.people],
        "claims": [claim_label(quantity) for quantity in entities.quantities],
    }


def digest_context(alerts: list[Alert], stories: Mapping[str, Story] | None = None) -> dict[str, Any]:
    """The variables a digest of several alerts gives a template."""
    contexts = [alert_context(a, stories) for a in alerts]
    return {
        "alerts": contexts,
        "count": len(alerts),
        "rules": list(dict.fromkeys(a.rule for a in alerts)),
        "severity": max((a.severity for a in alerts), key=SEVERITY_RANK.__getitem__, default="info"),
    }


def _label(match: MatchedTerm) -> str:
    """``Bakhmut as "Бахмута" (uk case form)``: the term, the form that matched and how it was derived."""
    label = match.term
    if match.form and match.form != match.term:
        label += f' as "{match.form}"'
    if match.via:
        label += f" ({match.via})"
    return label


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered notification."""

    title: str
    body: str


class Templates:
    """The compiled templates: built-in ones, or the files config.yaml names."""

    def __init__(self, sources: dict[str, str] | None = None) -> None:
        env = _environment()
        merged = {name: built_in(name) for name in TEMPLATE_NAMES} | (sources or {})
        self._compiled: dict[str, Template] = {name: env.from_string(text) for name, text in merged.items()}

    @classmethod
    def from_settings(cls, notify: NotifySettings) -> Templates:
        """Load the template files config.yaml names (a TemplateError or OSError when one is bad)."""
        return cls(_sources(notify))

    def render(self, alert: Alert, kind: TemplateKind, stories: Mapping[str, Story] | None = None) -> Message:
        """Title and body for one alert."""
        context = alert_context(alert, stories)
        return Message(_line(self._compiled["title"].render(context)), self._compiled[kind].render(context).strip())

    def render_digest(
        self, alerts: list[Alert], kind: TemplateKind, stories: Mapping[str, Story] | None = None
    ) -> Message:
        """Title and body for a digest of several alerts."""
        context = digest_context(alerts, stories)
        body = self._compiled[f"digest_{kind}"].render(context).strip()
        return Message(_line(self._compiled["digest_title"].render(context)), body)


def _line(text: str) -> str:
    return " ".join(text.split())


def _sources(notify: NotifySettings, problems: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """Template texts by name; a file that cannot be read raises, or with ``problems`` is recorded there."""
    templates = notify.templates
    sources: dict[str, str] = {}
    for name in ("short", "full", "digest_short", "digest_full"):
        path: Path | None = getattr(templates, name)
        if path is None:
            continue
        try:
            sources[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if problems is None:
                raise
            problems.append((name, f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}"))
    if templates.title is not None:
        sources["title"] = templates.title
    return sources


def sample_alert() -> Alert:
    """A representative alert, for checking templates."""
    return Alert(
        alert_id="sample",
        rule="sample-rule",
        severity="high",
        item_id="telegram:1:1",
        fired_at=datetime(2023, 5, 20, 12, 0, tzinfo=UTC),
        matched=[MatchedTerm(term="Bakhmut", start=0, end=7, form="Бахмута", via="uk case form")],
        snippet="Бахмута ...",
        source="telegram",
        channel="sample",
        url="https://t.me/sample/1",
        title="Sample",
        published_at=datetime(2023, 5, 20, 11, 59, tzinfo=UTC),
        lang="uk",
        entities=Entities(
            places=[
                Place(name="Bakhmut", start=0, end=7, lat=48.595, lon=38.0, id="geonames:713174", admin1="Donetsk"),
                Place(name="Andriivka", start=20, end=29, lat=48.5, lon=37.967, admin1="Donetsk", confidence=0.8),
            ],
            units=[Unit(id="ua-3-assault-brigade", name="3rd Separate Assault Brigade", start=40, end=60)],
            quantities=[Quantity(kind="losses", value=5, unit="tanks", start=70, end=77)],
        ),
    )


def template_problems(notify: NotifySettings) -> list[tuple[str, str]]:
    """``(template name, problem)`` for each template that cannot be read, compiled or rendered."""
    problems: list[tuple[str, str]] = []
    env = _environment()
    sources = _sources(notify, problems)
    alert = sample_alert()
    contexts = {
        "title": alert_context(alert),
        "short": alert_context(alert),
        "full": alert_context(alert),
        "digest_short": digest_context([alert, alert]),
        "digest_full": digest_context([alert, alert]),
    }
    for name, text in sources.items():
        try:
            env.from_string(text).render(contexts[name])
        except Exception as exc:  # noqa: BLE001 - a template can raise anything (TypeError from `{{ rule + 1 }}`)
            line = getattr(exc, "lineno", None)
            where = f"line {line}: " if line else ""
            problems.append((name, f"{where}{type(exc).__name__}: {exc}"))
    return problems
