"""Unit tests of notification delivery: sink/route/template config, Apprise URL secrets, templates,
routing, digest slots, and the notifier stage queueing alerts into per-sink outboxes in a real Redis.

No network: Apprise URLs are only parsed and instantiated here, never sent to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apprise.plugins.telegram
import pytest
import redis.asyncio as aioredis

from monitor.bus.consume import Outcome
from monitor.bus.keys import Keys
from monitor.config import NotifySettings, Settings, load_config, parse_config, secret_values
from monitor.errors import ConfigError
from monitor.log import Redactor
from monitor.metrics import Metrics
from monitor.notify.apprise_sink import REDACTED, AppriseSink, check_url, redact, url_secrets
from monitor.notify.outbox import Outbox
from monitor.notify.routing import Router
from monitor.notify.stage import NotifierStage, digest_slot
from monitor.notify.templates import Templates
from monitor.schema import Alert, MatchedTerm, encode

JSON_URL = "json://127.0.0.1:9/hook/x"
TG_SECRET = "ABCdefGHIjkl_mno"
TG_TOKEN = f"123456789:{TG_SECRET}"
TG_URL = f"tgram://{TG_TOKEN}/4242"
SLACK_URL = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
DISCORD_URL = "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"
MAILTO_URL = "mailto://user:hunter2pass@example.com"

RULES = [
    {"name": "bakhmut", "any": ["Bakhmut"], "severity": "high"},
    {"name": "wagner", "any": ["Wagner"], "severity": "medium"},
]
FIRED = datetime(2024, 5, 1, 12, 3, 20, tzinfo=UTC)


def settings_with(notify: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> Settings:
    """Settings the way the pipeline tests build them: parse_config on a dict with an empty environment."""
    return parse_config({"rules": RULES if rules is None else rules, "notify": notify}, env={})


def notify_problems(notify: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings_with(notify, rules)
    return info.value


def sinks(*names: str) -> list[dict[str, str]]:
    return [{"name": name, "url": f"json://127.0.0.1:9/hook/{name}"} for name in names]


def make_alert(
    alert_id: str = "a1",
    *,
    rule: str = "bakhmut",
    severity: str = "high",
    fired_at: datetime = FIRED,
    snippet: str = "Heavy fighting reported near Бахмута and Wagner positions.",
    title: str | None = "Fighting near Bakhmut",
    url: str | None = "https://t.me/kyivindependent/101",
    channel: str = "kyivindependent",
) -> Alert:
    return Alert(
        alert_id=alert_id,
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        item_id=f"telegram:kyivindependent:{alert_id}",
        fired_at=fired_at,
        matched=[
            MatchedTerm(term="Bakhmut", start=31, end=38, form="Бахмута", via="uk case form"),
            MatchedTerm(term="Wagner", start=43, end=49),
        ],
        snippet=snippet,
        source="telegram",
        channel=channel,
        url=url,
        title=title,
    )


# --- 1. config: sinks, routes, templates, aggregate, secrets ---------------------------------------------


def test_valid_sinks_parse_with_defaults() -> None:
    """A json:// and a tgram:// sink parse, keep their URL, and get every documented default."""
    settings = settings_with({"sinks": [{"name": "hook", "url": JSON_URL}, {"name": "tg", "url": TG_URL}]})
    hook, tg = settings.notify.sinks
    assert (hook.name, tg.name) == ("hook", "tg")
    assert hook.url.get_secret_value() == JSON_URL
    assert tg.url.get_secret_value() == TG_URL
    for sink in (hook, tg):
        assert sink.template == "auto"
        assert sink.api_url is None
        assert sink.rate_limit == 20
        assert sink.rate_window == 60.0
        assert sink.digest_max == 50
        assert sink.concurrency == 4
        assert sink.max_attempts == 6
        assert (sink.backoff, sink.backoff_max, sink.timeout) == (5.0, 900.0, 30.0)
    assert settings.notify.routes == []
    assert settings.notify.default_sinks is None
    assert settings.notify.delivered_ttl == 7 * 86400.0


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("bogus://abc", "bogus://abc"),
        ("bogus://abcSECRET42/xyz", "abcSECRET42"),
        ("not a url", "not a url"),
        ("not a url abcSECRET42", "abcSECRET42"),
        ("tgram://notatokenSECRET/42", "notatokenSECRET"),
    ],
)
def test_invalid_apprise_url_is_reported_without_the_url(url: str, secret: str) -> None:
    """An unusable Apprise URL is a problem at notify.sinks[0].url whose text never repeats the URL."""
    error = notify_problems({"sinks": [{"name": "a", "url": url}]})
    assert [path for path, _ in error.problems] == ["notify.sinks[0].url"]
    message = error.problems[0][1]
    assert "Apprise" in message
    assert secret not in message
    assert secret not in str(error)


def test_duplicate_sink_names_are_rejected() -> None:
    """Two sinks with one name are a problem naming that name."""
    error = notify_problems({"sinks": [{"name": "dup", "url": JSON_URL}, {"name": "dup", "url": TG_URL}]})
    found = dict(error.problems)
    assert "sink name 'dup' is used more than once" in found["notify"]
    assert TG_SECRET not in str(error)


def test_route_naming_unknown_sink_is_rejected() -> None:
    """A route's sink that no sink entry defines is a problem naming routes[i].sinks and the name."""
    error = notify_problems({"sinks": sinks("a"), "routes": [{"sinks": ["a"]}, {"sinks": ["ghost"]}]})
    message = dict(error.problems)["notify"]
    assert "routes[1].sinks: no sink is named 'ghost'" in message
    assert "routes[0]" not in message


def test_default_sinks_naming_unknown_sink_is_rejected() -> None:
    """default_sinks naming an undefined sink is a problem; naming a defined one is fine."""
    error = notify_problems({"sinks": sinks("a"), "default_sinks": ["a", "nowhere"]})
    message = dict(error.problems)["notify"]
    assert "default_sinks: no sink is named 'nowhere'" in message
    assert settings_with({"sinks": sinks("a"), "default_sinks": ["a"]}).notify.default_sinks == ["a"]


def test_route_naming_unknown_rule_is_rejected() -> None:
    """A route naming a rule that does not exist is a problem at notify.routes[0].rules."""
    error = notify_problems({"sinks": sinks("a"), "routes": [{"rules": ["bakhmut", "no-such-rule"], "sinks": ["a"]}]})
    assert error.problems == [("notify.routes[0].rules", "no rule is named 'no-such-rule'")]


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


ROUTE_TO_FILE_RULE = f"""\
rules:
  - name: bakhmut
    any: [Bakhmut]
notify:
  sinks:
    - name: a
      url: {JSON_URL}
  routes:
    - rules: [from-file]
      sinks: [a]
"""


def test_route_may_name_a_rule_from_the_rules_folder(tmp_path: Path) -> None:
    """load_config accepts a route naming a rule defined only in rules/*.yaml beside config.yaml."""
    path = write_config(tmp_path / "with", ROUTE_TO_FILE_RULE)
    (tmp_path / "with" / "rules").mkdir()
    (tmp_path / "with" / "rules" / "extra.yaml").write_text("rules:\n  - name: from-file\n    any: [Wagner]\n")
    settings = load_config(path, env={})
    assert [rule.name for rule in settings.rules] == ["bakhmut", "from-file"]
    assert settings.notify.routes[0].rules == ["from-file"]
    # Without the rule file the same config is rejected at the route.
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "without", ROUTE_TO_FILE_RULE), env={})
    assert info.value.problems == [("notify.routes[0].rules", "no rule is named 'from-file'")]


def test_template_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    """A Jinja2 syntax error in the short template file is a problem at notify.templates.short with its line."""
    bad = tmp_path / "short.j2"
    bad.write_text("{{ rule }} fired\n{% if severity %}\nno endif here\n", encoding="utf-8")
    error = notify_problems({"sinks": sinks("a"), "templates": {"short": str(bad)}})
    found = dict(error.problems)
    assert list(found) == ["notify.templates.short"]
    assert "TemplateSyntaxError" in found["notify.templates.short"]
    assert found["notify.templates.short"].startswith("line ")


def test_template_syntax_error_reports_the_right_line(tmp_path: Path) -> None:
    """The line number reported for a syntax error is the line the bad tag is on."""
    bad = tmp_path / "full.j2"
    bad.write_text("line one\nline two {{ rule }}\nline three {% for %}\n", encoding="utf-8")
    error = notify_problems({"sinks": sinks("a"), "templates": {"full": str(bad)}})
    assert dict(error.problems)["notify.templates.full"].startswith("line 3: ")


def test_template_with_undefined_variable_is_a_config_error(tmp_path: Path) -> None:
    """A template using a variable alerts do not have fails at check time (StrictUndefined), not at send time."""
    bad = tmp_path / "short.j2"
    bad.write_text("{{ rule }} {{ no_such_field }}\n", encoding="utf-8")
    error = notify_problems({"sinks": sinks("a"), "templates": {"short": str(bad), "title": "{{ also_missing }}"}})
    found = dict(error.problems)
    assert set(found) == {"notify.templates.short", "notify.templates.title"}
    assert "no_such_field" in found["notify.templates.short"]
    assert "UndefinedError" in found["notify.templates.short"]
    assert "also_missing" in found["notify.templates.title"]


def test_template_raising_type_error_is_a_config_error(tmp_path: Path) -> None:
    """A template that raises a Python error on the sample alert is a ConfigError problem, not a crash."""
    bad = tmp_path / "short.j2"
    bad.write_text("{{ rule + 1 }}\n", encoding="utf-8")
    error = notify_problems({"sinks": sinks("a"), "templates": {"short": str(bad)}})
    assert [path for path, _ in error.problems] == ["notify.templates.short"]


def test_missing_template_file_is_an_error_naming_it(tmp_path: Path) -> None:
    """A template file that does not exist is a problem at that template's path naming the file."""
    missing = tmp_path / "nope" / "digest.j2"
    error = notify_problems({"sinks": sinks("a"), "templates": {"digest_full": str(missing)}})
    found = dict(error.problems)
    assert list(found) == ["notify.templates.digest_full"]
    assert str(missing) in found["notify.templates.digest_full"]
    assert "cannot read" in found["notify.templates.digest_full"]


def test_relative_template_paths_resolve_against_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config reads templates/short.j2 from beside config.yaml, whatever the working directory is."""
    folder = tmp_path / "conf"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "short.j2").write_text("CUSTOM {{ rule }} / {{ channel }}\n", encoding="utf-8")
    path = write_config(
        folder,
        "rules:\n  - name: bakhmut\n    any: [Bakhmut]\n"
        f"notify:\n  sinks:\n    - name: a\n      url: {JSON_URL}\n"
        "  templates:\n    short: templates/short.j2\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_config(path, env={})
    assert settings.notify.templates.short == (folder / "templates" / "short.j2").resolve()
    message = Templates.from_settings(settings.notify).render(make_alert(), "short")
    assert message.body == "CUSTOM bakhmut / kyivindependent"
    # The full template was not set, so the built-in one is used.
    assert Templates.from_settings(settings.notify).render(make_alert(), "full").body.startswith("Rule:      bakhmut")


def test_rule_aggregate_parses_durations_and_defaults_to_zero() -> None:
    """Rule.aggregate accepts "10m" as 600 seconds and is 0 (send at once) when unset."""
    settings = settings_with(
        {}, rules=[{"name": "slow", "any": ["x"], "aggregate": "10m"}, {"name": "fast", "any": ["y"]}]
    )
    by_name = {rule.name: rule for rule in settings.rules}
    assert by_name["slow"].aggregate == 600.0
    assert by_name["fast"].aggregate == 0.0
    error = notify_problems({}, rules=[{"name": "bad", "any": ["x"], "aggregate": "soon"}])
    assert [path for path, _ in error.problems] == ["rules[0].aggregate"]


def test_secret_values_include_sink_urls_and_token_parts() -> None:
    """secret_values lists each sink URL and its bot token, so the log redactor scrubs them."""
    settings = settings_with({"sinks": [{"name": "hook", "url": JSON_URL}, {"name": "tg", "url": TG_URL}]})
    values = secret_values(settings)
    assert JSON_URL in values
    assert TG_URL in values
    assert TG_SECRET in values
    assert TG_TOKEN in values
    assert "127.0.0.1" not in values
    line = Redactor(values).scrub(f"POST https://api.telegram.org/bot{TG_TOKEN}/sendMessage failed; secret {TG_SECRET}")
    assert TG_SECRET not in line
    assert "123456789:" not in line
    assert "https://api.telegram.org/bot***" in line


def test_settings_repr_never_shows_sink_tokens() -> None:
    """repr(settings) and str(settings.notify) show neither a sink URL nor its token."""
    settings = settings_with(
        {"sinks": [{"name": "tg", "url": TG_URL}, {"name": "mail", "url": MAILTO_URL}], "default_sinks": ["tg"]}
    )
    for text in (repr(settings), str(settings.notify), repr(settings.notify.sinks), str(settings.notify.sinks[0])):
        assert TG_SECRET not in text
        assert "hunter2pass" not in text
        assert "tgram://" not in text
    assert "tg" in str(settings.notify)


# --- 2. url_secrets, check_url, redact ---------------------------------------------------------------


def test_check_url_accepts_known_schemes_and_rejects_others() -> None:
    """check_url returns None for usable URLs and a reason naming only the scheme otherwise."""
    for url in (JSON_URL, TG_URL, SLACK_URL, DISCORD_URL, MAILTO_URL):
        assert check_url(url) is None, url
    bogus = check_url("bogus://hiddenpart123")
    assert bogus is not None and "bogus://" in bogus and "hiddenpart123" not in bogus
    plain = check_url("hiddenpart123")
    assert plain is not None and "scheme" in plain and "hiddenpart123" not in plain


def test_url_secrets_include_tokens_but_not_hosts() -> None:
    """url_secrets has the whole URL and each token, and leaves out host names, IPs and short parts."""
    tg = url_secrets(TG_URL)
    assert {TG_URL, TG_TOKEN, TG_SECRET} <= set(tg)
    assert "4242" not in tg
    hook = url_secrets("json://hooks.example.com:8443/path/SeCrEtPath123")
    assert "SeCrEtPath123" in hook
    assert "hooks.example.com" not in hook
    assert "8443" not in hook
    ip = url_secrets(JSON_URL)
    assert JSON_URL in ip
    assert "127.0.0.1" not in ip
    mail = url_secrets(MAILTO_URL)
    assert "hunter2pass" in mail
    assert "example.com" not in mail
    discord = url_secrets(DISCORD_URL)
    assert "JHMHI8qBe7bk2ZwO5U711o3dV_js" in discord
    # Longest first, so the whole URL is replaced before its parts.
    assert tg == sorted(tg, key=len, reverse=True)


def test_redact_replaces_every_secret() -> None:
    """redact leaves no secret of the URL in a text that repeats the URL and its token several times."""
    secrets = url_secrets(TG_URL)
    text = f"sending to {TG_URL}: bot{TG_TOKEN} refused; token {TG_SECRET} again {TG_SECRET}; host api.telegram.org"
    out = redact(text, secrets)
    assert TG_SECRET not in out
    assert "123456789" not in out
    assert out.count(REDACTED) >= 4
    assert "api.telegram.org" in out
    assert out.startswith("sending to ***:")
    assert redact("nothing secret here", secrets) == "nothing secret here"


# --- 3. AppriseSink constructor -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [(TG_URL, "short"), (SLACK_URL, "short"), (DISCORD_URL, "short"), (JSON_URL, "full"), (MAILTO_URL, "full")],
)
def test_auto_template_kind_follows_scheme(url: str, kind: str) -> None:
    """With template="auto", chat apps get the short body and webhooks/email the full one."""
    assert AppriseSink("s", url).kind == kind
    assert AppriseSink("s", url, template="auto").kind == kind


def test_explicit_template_wins_over_scheme() -> None:
    """An explicit template setting overrides the scheme's default kind."""
    assert AppriseSink("s", TG_URL, template="full").kind == "full"
    assert AppriseSink("s", JSON_URL, template="short").kind == "short"


def test_sink_repr_has_name_and_scheme_but_not_token() -> None:
    """repr(AppriseSink) names the sink and its scheme and never the token."""
    sink = AppriseSink("alerts-tg", TG_URL)
    text = repr(sink)
    assert "alerts-tg" in text
    assert "tgram" in text
    assert TG_SECRET not in text and "123456789" not in text
    assert TG_SECRET not in str(sink)


def test_unusable_url_raises_without_the_url() -> None:
    """Constructing a sink with an unusable URL raises ValueError naming the sink but not the URL."""
    with pytest.raises(ValueError, match="'bad'") as info:
        AppriseSink("bad", "bogus://hiddenpart123")
    assert "hiddenpart123" not in str(info.value)


def test_api_url_sets_instance_notify_url_only() -> None:
    """api_url points one tgram sink at another Bot API server without changing the plugin class."""
    original = apprise.plugins.telegram.NotifyTelegram.notify_url
    assert original == "https://api.telegram.org/bot"
    custom = AppriseSink("tg-local", TG_URL, api_url="http://127.0.0.1:8081/")
    plain = AppriseSink("tg-plain", TG_URL)
    custom_plugin: Any = custom._apprise[0]
    plain_plugin: Any = plain._apprise[0]
    assert custom_plugin.notify_url == "http://127.0.0.1:8081/bot"
    assert plain_plugin.notify_url == original
    assert apprise.plugins.telegram.NotifyTelegram.notify_url == original
    # api_url is ignored for other schemes.
    hook = AppriseSink("hook", JSON_URL, api_url="http://127.0.0.1:8081")
    assert getattr(hook._apprise[0], "notify_url", None) != "http://127.0.0.1:8081/bot"


# --- 4. templates --------------------------------------------------------------------------------------


def test_short_body_has_snippet_link_source_channel_terms() -> None:
    """The short body carries severity, rule, source/channel, the snippet, the matched terms and the link."""
    alert = make_alert()
    body = Templates().render(alert, "short").body
    lines = body.splitlines()
    assert lines[0] == "HIGH · bakhmut · telegram/kyivindependent"
    assert alert.snippet in body
    assert "Terms: Bakhmut, Wagner" in body
    assert lines[-1] == "https://t.me/kyivindependent/101"


def test_full_body_has_forms_and_derivations() -> None:
    """The full body carries rule, source, channel, link, snippet, ids, and each term's form and via."""
    alert = make_alert()
    body = Templates().render(alert, "full").body
    assert "Rule:      bakhmut (severity high)" in body
    assert "Source:    telegram / kyivindependent" in body
    assert "Link:      https://t.me/kyivindependent/101" in body
    assert "Title:     Fighting near Bakhmut" in body
    assert '- Bakhmut as "Бахмута" (uk case form)' in body
    assert "- Wagner\n" in body
    assert alert.snippet in body
    assert "Fired:     2024-05-01T12:03:20Z" in body
    assert body.endswith("alert a1 · item telegram:kyivindependent:a1")


def test_body_without_url_has_no_link_line() -> None:
    """An alert without a URL renders no link in either body."""
    alert = make_alert(url=None, title=None)
    assert "http" not in Templates().render(alert, "short").body
    full = Templates().render(alert, "full").body
    assert "Link:" not in full and "Title:" not in full


def test_title_has_upper_severity_and_rule() -> None:
    """The title is "[SEVERITY] rule: title", falling back to the snippet cut at 80 characters."""
    templates = Templates()
    assert templates.render(make_alert(), "short").title == "[HIGH] bakhmut: Fighting near Bakhmut"
    long_snippet = "Shelling " * 40
    title = templates.render(make_alert(title=None, severity="critical", snippet=long_snippet), "full").title
    assert title.startswith("[CRITICAL] bakhmut: Shelling Shelling")
    assert title.endswith("…")
    assert len(title) <= len("[CRITICAL] bakhmut: ") + 80
    assert "\n" not in title


def test_digest_lists_every_alert_and_the_count() -> None:
    """A digest lists each alert's rule and snippet and the count; its title has the highest severity."""
    alerts = [
        make_alert("a1", severity="low", snippet="first snippet about Bakhmut"),
        make_alert("a2", rule="wagner", severity="critical", snippet="second snippet about Wagner"),
        make_alert("a3", severity="medium", snippet="third snippet", url="https://t.me/kyivindependent/103"),
    ]
    templates = Templates()
    short = templates.render_digest(alerts, "short")
    assert short.body.startswith("3 alerts (bakhmut, wagner):")
    lines = short.body.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("• LOW bakhmut telegram/kyivindependent: first snippet about Bakhmut")
    assert lines[2].startswith("• CRITICAL wagner telegram/kyivindependent: second snippet about Wagner")
    assert lines[3] == "• MEDIUM bakhmut telegram/kyivindependent: third snippet https://t.me/kyivindependent/103"
    assert short.title == "[CRITICAL] 3 alerts: bakhmut, wagner"
    full = templates.render_digest(alerts, "full")
    assert full.body.startswith("3 alerts for bakhmut, wagner (highest severity critical).")
    for index, alert in enumerate(alerts, start=1):
        assert f"{index}. [{alert.severity}] {alert.rule}" in full.body
        assert alert.snippet in full.body
    assert full.title == short.title


def test_digest_title_severity_is_the_highest() -> None:
    """The digest title's severity is the highest among its alerts, whatever their order."""
    alerts = [make_alert("a1", severity="info"), make_alert("a2", severity="high"), make_alert("a3", severity="low")]
    assert Templates().render_digest(alerts, "short").title.startswith("[HIGH] 3 alerts:")
    assert Templates().render_digest(alerts[::2], "full").title.startswith("[LOW] 2 alerts:")


def test_custom_template_sources_are_used() -> None:
    """Templates given as sources replace the built-in ones by name; the others stay built in."""
    templates = Templates({"short": "custom {{ rule }} {{ terms | join('+') }}", "title": "T {{ severity }}"})
    message = templates.render(make_alert(), "short")
    assert message.body == "custom bakhmut Bakhmut+Wagner"
    assert message.title == "T high"
    assert templates.render(make_alert(), "full").body.startswith("Rule:      bakhmut (severity high)")
    digest = Templates({"digest_short": "{{ count }}:{{ alerts | map(attribute='alert_id') | join(',') }}"})
    assert digest.render_digest([make_alert("x"), make_alert("y")], "short").body == "2:x,y"


# --- 5. router -----------------------------------------------------------------------------------------


def router(notify: dict[str, Any]) -> Router:
    return Router(settings_with(notify).notify)


def test_no_routes_sends_to_every_sink() -> None:
    """With no routes and no default_sinks, every alert goes to every sink in config order."""
    r = router({"sinks": sinks("a", "b", "c")})
    assert r.sinks_for(make_alert()) == ["a", "b", "c"]
    assert r.sinks_for(make_alert(rule="wagner", severity="info")) == ["a", "b", "c"]


def test_route_matches_its_rules_at_or_above_min_severity() -> None:
    """A route with rules and min_severity takes only those rules' alerts at or above that severity."""
    r = router(
        {
            "sinks": sinks("a", "tg"),
            "routes": [{"rules": ["bakhmut"], "min_severity": "high", "sinks": ["tg"]}],
            "default_sinks": ["a"],
        }
    )
    assert r.sinks_for(make_alert(severity="high")) == ["tg"]
    assert r.sinks_for(make_alert(severity="critical")) == ["tg"]
    assert r.sinks_for(make_alert(severity="medium")) == ["a"]
    assert r.sinks_for(make_alert(rule="wagner", severity="critical")) == ["a"]


def test_matching_routes_union_in_sink_config_order() -> None:
    """Every matching route adds its sinks; the result is their union in the order the sinks are configured."""
    r = router(
        {
            "sinks": sinks("a", "b", "c"),
            "routes": [
                {"sinks": ["c", "b"]},
                {"rules": ["bakhmut"], "sinks": ["a", "c"]},
                {"rules": ["wagner"], "sinks": ["a"]},
            ],
        }
    )
    assert r.sinks_for(make_alert(rule="bakhmut")) == ["a", "b", "c"]
    assert r.sinks_for(make_alert(rule="wagner")) == ["a", "b", "c"]
    r2 = router({"sinks": sinks("a", "b", "c"), "routes": [{"sinks": ["c"]}, {"rules": ["bakhmut"], "sinks": ["a"]}]})
    assert r2.sinks_for(make_alert(rule="bakhmut")) == ["a", "c"]
    assert r2.sinks_for(make_alert(rule="wagner")) == ["c"]


def test_unmatched_alert_goes_to_default_sinks() -> None:
    """An alert no route matches goes to default_sinks, or to every sink when that is unset."""
    routes = [{"rules": ["bakhmut"], "sinks": ["a"]}]
    assert router({"sinks": sinks("a", "b", "c"), "routes": routes, "default_sinks": ["b"]}).sinks_for(
        make_alert(rule="wagner")
    ) == ["b"]
    assert router({"sinks": sinks("a", "b", "c"), "routes": routes}).sinks_for(make_alert(rule="wagner")) == [
        "a",
        "b",
        "c",
    ]


def test_empty_default_sinks_sends_nothing_remotely() -> None:
    """default_sinks: [] means an unrouted alert goes to no remote sink, while routed ones still do."""
    r = router({"sinks": sinks("a", "b"), "routes": [{"rules": ["bakhmut"], "sinks": ["b"]}], "default_sinks": []})
    assert r.sinks_for(make_alert(rule="wagner")) == []
    assert r.sinks_for(make_alert(rule="bakhmut")) == ["b"]
    assert router({"sinks": sinks("a"), "default_sinks": []}).sinks_for(make_alert()) == []


# --- 6. digest_slot ------------------------------------------------------------------------------------


def test_digest_slot_same_period_shares_key_and_due_time() -> None:
    """Alerts of one rule fired within one period share the digest key, due at the period's end."""
    period_start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    first = digest_slot(make_alert("a1", fired_at=period_start + timedelta(seconds=1)), 600.0)
    last = digest_slot(make_alert("a2", fired_at=period_start + timedelta(seconds=599)), 600.0)
    assert first == last
    due, key = first
    assert due == (period_start + timedelta(minutes=10)).timestamp()
    assert key == f"bakhmut:{int(period_start.timestamp())}"
    assert digest_slot(make_alert(fired_at=period_start), 600.0) == first


def test_digest_slot_differs_by_period_and_rule() -> None:
    """The next period, or another rule in the same period, gets a different key."""
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    base_due, base_key = digest_slot(make_alert(fired_at=start + timedelta(minutes=5)), 600.0)
    next_due, next_key = digest_slot(make_alert(fired_at=start + timedelta(minutes=10)), 600.0)
    assert next_key != base_key
    assert next_due == base_due + 600.0
    other_due, other_key = digest_slot(make_alert(rule="wagner", fired_at=start + timedelta(minutes=5)), 600.0)
    assert other_key != base_key
    assert other_due == base_due


# --- 7. NotifierStage with a real Redis -----------------------------------------------------------------


def entry(alert: Alert, entry_id: bytes = b"1-0") -> tuple[bytes, dict[bytes, bytes]]:
    return entry_id, {b"v": b"1", b"data": encode(alert)}


class LocalSink:
    """A local sink that keeps what it is sent."""

    name = "local"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


def make_stage(
    redis_client: aioredis.Redis,
    keys: Keys,
    notify: dict[str, Any],
    *,
    local: list[LocalSink] | None = None,
    aggregate: float = 0.0,
    queued_log: list[set[str]] | None = None,
) -> NotifierStage:
    settings: NotifySettings = settings_with(notify).notify
    outboxes = {
        s.name: Outbox(redis_client, keys, s.name, delivered_ttl=settings.delivered_ttl) for s in settings.sinks
    }
    return NotifierStage(
        redis_client,
        keys,
        local or [],
        Metrics(),
        3600,
        outboxes=outboxes,
        router=Router(settings),
        aggregate_for=lambda _rule: aggregate,
        on_queued=queued_log.append if queued_log is not None else None,
        clock=lambda: 1000.0,
    )


async def write_outcomes(redis_client: aioredis.Redis, results: list[Outcome | BaseException]) -> None:
    """Run every outcome's extra writes on one pipeline, as the consumer loop does."""
    pipe = redis_client.pipeline(transaction=False)
    for result in results:
        assert isinstance(result, Outcome), result
        if result.extra is not None:
            result.extra(pipe)
    await pipe.execute()


async def outbox_of(redis_client: aioredis.Redis, keys: Keys, sink: str) -> dict[str, float]:
    rows: Any = await redis_client.zrange(keys.outbox(sink), 0, -1, withscores=True)
    return {member.decode(): float(score) for member, score in rows}


async def test_stage_queues_alert_in_each_routed_outbox(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Each sink the router picks gets the alert id in its outbox, scored by the injected clock, with its JSON."""
    stage = make_stage(redis_client, keys, {"sinks": sinks("a", "b")})
    alert = make_alert("alert-1")
    results = await stage.handle([entry(alert)])
    assert len(results) == 1
    await write_outcomes(redis_client, results)
    for name in ("a", "b"):
        assert await outbox_of(redis_client, keys, name) == {"alert-1": 1000.0}
        assert await redis_client.hget(keys.outbox_payload(name), "alert-1") == encode(alert)
        assert await redis_client.hlen(keys.outbox_digest(name)) == 0


async def test_stage_queues_only_routed_sinks(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Alerts reach only the outboxes their routes name; a batch of several alerts is queued whole."""
    stage = make_stage(
        redis_client,
        keys,
        {"sinks": sinks("a", "b"), "routes": [{"rules": ["bakhmut"], "sinks": ["a"]}], "default_sinks": ["b"]},
    )
    results = await stage.handle(
        [entry(make_alert("x1"), b"1-0"), entry(make_alert("x2", rule="wagner"), b"2-0"), entry(make_alert("x3"))]
    )
    await write_outcomes(redis_client, results)
    assert await outbox_of(redis_client, keys, "a") == {"x1": 1000.0, "x3": 1000.0}
    assert await outbox_of(redis_client, keys, "b") == {"x2": 1000.0}


async def test_stage_aggregate_rule_is_due_at_period_end(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A rule with aggregate is queued due at its period's end with the digest key beside it."""
    stage = make_stage(redis_client, keys, {"sinks": sinks("a", "b")}, aggregate=600.0)
    alert = make_alert("agg-1")
    await write_outcomes(redis_client, await stage.handle([entry(alert)]))
    due, key = digest_slot(alert, 600.0)
    assert due == datetime(2024, 5, 1, 12, 10, tzinfo=UTC).timestamp()
    for name in ("a", "b"):
        assert await outbox_of(redis_client, keys, name) == {"agg-1": due}
        assert await redis_client.hget(keys.outbox_digest(name), "agg-1") == key.encode()


async def test_stage_skips_sinks_already_delivered(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A sink whose delivered marker is set for the alert gets nothing queued; the others still do."""
    stage = make_stage(redis_client, keys, {"sinks": sinks("a", "b")})
    await redis_client.set(keys.delivered("a", "dup-1"), b"1")
    await write_outcomes(redis_client, await stage.handle([entry(make_alert("dup-1"))]))
    assert await outbox_of(redis_client, keys, "a") == {}
    assert await redis_client.exists(keys.outbox_payload("a")) == 0
    assert await outbox_of(redis_client, keys, "b") == {"dup-1": 1000.0}


async def test_stage_writes_nothing_when_every_sink_has_the_alert(redis_client: aioredis.Redis, keys: Keys) -> None:
    """When every routed sink already has the alert, the outcome has no writes and no queued callback."""
    queued: list[set[str]] = []
    stage = make_stage(redis_client, keys, {"sinks": sinks("a", "b")}, queued_log=queued)
    for name in ("a", "b"):
        await redis_client.set(keys.delivered(name, "done-1"), b"1")
    [outcome] = await stage.handle([entry(make_alert("done-1"))])
    assert isinstance(outcome, Outcome)
    assert outcome.extra is None
    assert outcome.on_written is None
    assert queued == []


async def test_stage_on_queued_gets_sink_names_after_write(redis_client: aioredis.Redis, keys: Keys) -> None:
    """on_queued is called with the set of sinks that got alerts, only once the outcome's on_written runs."""
    queued: list[set[str]] = []
    stage = make_stage(
        redis_client,
        keys,
        {"sinks": sinks("a", "b", "c"), "routes": [{"rules": ["bakhmut"], "sinks": ["a", "c"]}]},
        queued_log=queued,
    )
    results = await stage.handle([entry(make_alert("q1"), b"1-0"), entry(make_alert("q2"), b"2-0")])
    await write_outcomes(redis_client, results)
    assert queued == []
    last = results[-1]
    assert isinstance(last, Outcome) and last.on_written is not None
    last.on_written()
    assert queued == [{"a", "c"}]


async def test_stage_local_sink_sent_at_once_and_marked(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A local sink is sent to during handle and its delivered marker is written with the outbox entries."""
    local = LocalSink()
    stage = make_stage(redis_client, keys, {"sinks": sinks("a")}, local=[local])
    alert = make_alert("loc-1")
    results = await stage.handle([entry(alert)])
    assert [a.alert_id for a in local.alerts] == ["loc-1"]
    assert await redis_client.exists(keys.delivered("local", "loc-1")) == 0
    await write_outcomes(redis_client, results)
    assert await redis_client.exists(keys.delivered("local", "loc-1")) == 1
    assert await outbox_of(redis_client, keys, "a") == {"loc-1": 1000.0}
    # Handling the same entry again does not re-send locally nor change the queued schedule.
    stage.clock = lambda: 2000.0
    await write_outcomes(redis_client, await stage.handle([entry(alert)]))
    assert len(local.alerts) == 1
    assert await outbox_of(redis_client, keys, "a") == {"loc-1": 1000.0}


def test_a_url_given_as_a_route_sink_is_not_echoed() -> None:
    """A sink URL pasted into routes[].sinks or default_sinks is rejected without repeating its token."""
    url = "tgram://123456789:ABCdefGHIjkl_mno/4242"
    error = notify_problems({"sinks": sinks("a"), "routes": [{"sinks": [url]}], "default_sinks": [url]})
    text = " ".join(message for _, message in error.problems) + str(error)
    assert "expected a sink name, not a URL" in text
    assert "ABCdefGHIjkl_mno" not in text
