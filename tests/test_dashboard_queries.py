"""Every query of the Grafana dashboard returns data from a real `monitor run` scraped by a real Prometheus.

The module starts, all on 127.0.0.1: the session's redis-server, a local stand-in for the t.me web
preview (two channels) that also accepts the JSON webhook of a notification sink, `python -m monitor
run` on the sample corpus, and `prometheus` scraping it every second with deploy/prometheus/alerts.yml
loaded. It then provokes the events some counters wait for (a dead letter, an entry reclaimed from an
idle consumer and found to be a duplicate, a rule reload, a rejected corpus file, trimming), and
evaluates every panel query and template variable of deploy/grafana/dashboards/warwatch.json.
A query that errors or returns no series fails the test, except the ones in ALLOWLIST, which only
have data when an optional collector runs or a rare event happens: those must still parse.
Skipped, with the reason, when the prometheus binary is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor.bus.redis import free_port
from tests.conftest import REPO_ROOT, SAMPLE_CORPUS_DIR
from tests.redis_server import RedisServer
from tests.telegram_web_pages import FakeChannel, Post

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "warwatch.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian: apt-get install prometheus; .ci/run does it)"
)
pytestmark = pytest.mark.timeout(300)

# Grafana's variables as a query runs: "All" of a multi-value variable is its allValue (".*"); a
# selection of several values is a regex alternation. $__rate_interval and friends become a window
# that holds several 1 s scrapes.
ALL_VALUES = {"source": ".*", "channel": ".*"}
SELECTED_VALUES = {"source": "(corpus|telegram_web)", "channel": "(corpus|ab3army)"}
WINDOW = "1m"

# Queries that may legitimately return no series in this setup; each must still parse.
ALLOWLIST: dict[str, str] = {
    "min by (endpoint) (warwatch_x_rate_limit_remaining)": "X collector only (needs X_BEARER_TOKEN)",
    "max by (endpoint) (warwatch_x_rate_limit_reset_timestamp_seconds) - time()": "X collector only",
    'sum(warwatch_feed_stale{channel=~"$channel"})': "feeds collector only (collectors.feeds.urls)",
    "sum by (source, channel) (increase(warwatch_collector_reconciliation_fills_total"
    '{source=~"$source",channel=~"$channel"}[$__rate_interval]))': "Telethon collector only (TELEGRAM_API_ID)",
}

CHANNEL_ID = 1392375461


# --- the dashboard's queries ----------------------------------------------------------------------


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in iter_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variable_queries() -> dict[str, str]:
    """name -> query of every query-type template variable."""
    found = {}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found[variable["name"]] = query["query"] if isinstance(query, dict) else query
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    """The expression as Grafana sends it, with template variables replaced."""
    for name in ("__rate_interval", "__interval", "__range"):
        expr = expr.replace(f"${{{name}}}", WINDOW).replace(f"${name}", WINDOW)
    for name, value in values.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr


# --- local servers --------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET on 127.0.0.1 without any proxy from the environment."""
    assert url.startswith("http://127.0.0.1:"), url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a /metrics exposition, or None when it is absent."""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:  # not an exposition (the request failed)
        return None
    for family in families:
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


class FakeServices(ThreadingHTTPServer):
    """t.me/s pages of a few channels and a JSON webhook for the notification sink."""

    daemon_threads = True

    def __init__(self, channels: dict[str, FakeChannel]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.channels = channels
        self.hooks: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeServices

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        channel = self.server.channels.get(url.path.removeprefix("/s/"))
        if not url.path.startswith("/s/") or channel is None:
            self._reply(404, "text/plain", "not found")
            return
        before = urllib.parse.parse_qs(url.query).get("before")
        self._reply(200, "text/html; charset=utf-8", channel.render(int(before[0]) if before else None))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.startswith("/hook/"):
            self._reply(404, "text/plain", "not found")
            return
        self.server.hooks.append(json.loads(body or b"{}"))
        self._reply(200, "application/json", "{}")

    def _reply(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


def recent_channel(name: str, title: str, channel_id: int, texts: list[str]) -> FakeChannel:
    """A channel whose posts were published in the last hour, the last text newest."""
    now = datetime.now(UTC).replace(microsecond=0)
    posts = [
        Post(100 + index, text_html=text, when=now - timedelta(minutes=5 * (len(texts) - index)))
        for index, text in enumerate(texts)
    ]
    return FakeChannel(name, title, channel_id, posts)


# --- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus_url: str
    metrics_url: str
    redis: redis.Redis
    prefix: str
    config: Path
    logs: dict[str, Path]

    def query(self, expr: str) -> dict[str, Any]:
        status, body = http_get(f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        try:
            reply: dict[str, Any] = json.loads(body)
        except json.JSONDecodeError:
            reply = {"status": "error", "error": f"HTTP {status}: {body[:300]}"}
        return reply

    def series(self, expr: str) -> list[dict[str, Any]]:
        reply = self.query(expr)
        assert reply.get("status") == "success", f"{expr}: {reply.get('error')}"
        return list(reply["data"]["result"])

    def metrics(self) -> str:
        return http_get(self.metrics_url)[1]

    def tail(self) -> str:
        parts = []
        for name, path in self.logs.items():
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            if name == "prometheus":  # its info lines are start-up noise
                lines = [line for line in lines if "level=info" not in line]
            lines = lines[-40:]
            parts.append(f"--- {name} ({path}) ---\n" + "\n".join(lines))
        return "\n".join(parts)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def monitor_config(tmp: Path, redis_url: str, prefix: str, metrics_port: int, services: FakeServices) -> Path:
    rules = yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))["rules"]
    inbox = tmp / "inbox"
    inbox.mkdir()
    (inbox / "empty.txt").write_text("")  # rejected by the corpus collector (empty file)
    config = {
        "redis": {
            "url": redis_url,
            "key_prefix": prefix,
            # Idle entries are reclaimed after 1 s, so the test can leave one with a vanished consumer.
            "consumer": {"claim_idle_ms": 1000, "claim_interval": "1s"},
            # Acknowledged entries beyond 5 per stream are trimmed every second.
            "retention": {"max_entries": 5, "interval": "1s"},
        },
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": metrics_port, "stats_interval": "1s"},
        "log": {"format": "json"},
        "collectors": {
            "corpus": {"paths": [str(SAMPLE_CORPUS_DIR), str(inbox)]},
            "telegram_web": {
                "enabled": True,
                "base_url": services.base_url,
                "channels": sorted(services.channels),
                "interval": "30s",
            },
            "telegram": {"enabled": False},
            "x": {"enabled": False},
            "feeds": {"enabled": False},
        },
        "rules": rules,
        "notify": {
            "console": {"enabled": False},
            "sinks": [{"name": "desk", "url": f"json://127.0.0.1:{services.server_address[1]}/hook/desk"}],
        },
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def prometheus_config(tmp: Path, metrics_port: int) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "warwatch", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]},
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def has_samples(stack: Stack, selector: str, count: int = 3) -> Callable[[], bool]:
    """Prometheus holds at least ``count`` samples of some series of ``selector`` in the last minute."""

    def check() -> bool:
        reply = stack.query(f"count_over_time({selector}[{WINDOW}]) >= {count}")
        return reply.get("status") == "success" and bool(reply["data"]["result"])

    return check


def provoke_events(stack: Stack) -> None:
    """Make the monitor count what a healthy run of the corpus never does."""
    r = stack.redis
    raw = f"{stack.prefix}:raw"
    # An entry that cannot be decoded goes to the dead stream at once.
    r.xadd(raw, {"v": "1", "data": "{not json"})
    # A copy of a real raw entry, delivered to a consumer that then vanishes: after claim_idle_ms the
    # normalizer reclaims it (XAUTOCLAIM), and its output already exists (a duplicate).
    entries: Any = r.xrevrange(raw, count=50)
    fields: Any = next(f for _, f in entries if f.get(b"data", b"").startswith(b'{"'))
    pipe = r.pipeline(transaction=True)
    pipe.xadd(raw, fields)
    pipe.xreadgroup("normalizer", "vanished-consumer", {raw: ">"}, count=1)
    pipe.execute()
    # A changed config file makes the daemon reload the rules.
    stack.config.write_text(stack.config.read_text() + "\n")


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, the fake services, `monitor run` and Prometheus, all on 127.0.0.1, stopped afterwards."""
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed")
    tmp = tmp_path_factory.mktemp("dashboard")
    channels = {
        "ab3army": recent_channel(
            "ab3army",
            "3rd Assault Brigade",
            CHANNEL_ID,
            ["Рота пройшла вишкіл.", "Штурмові групи відбили атаки біля Бахмута.<br>Тримаємося!"],
        ),
        "nexta_live": recent_channel(
            "nexta_live", "NEXTA Live", CHANNEL_ID + 1, ["Weather report.", "Heavy fighting near Avdiivka."]
        ),
    }
    services = FakeServices(channels)
    threading.Thread(target=services.serve_forever, name="fake-services", daemon=True).start()
    prefix = f"dash{uuid.uuid4().hex[:10]}"
    metrics_port = free_port()
    prometheus_port = free_port()
    config = monitor_config(tmp, redis_server.url, prefix, metrics_port, services)
    logs = {"monitor": tmp / "monitor.log", "prometheus": tmp / "prometheus.log"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WARWATCH", "TELEGRAM_", "X_BEARER"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    client = redis.Redis.from_url(redis_server.url)
    monitor = prometheus = None
    try:
        with logs["monitor"].open("wb") as out:
            monitor = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=env,
            )
        stack = Stack(
            prometheus_url=f"http://127.0.0.1:{prometheus_port}",
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            redis=client,
            prefix=prefix,
            config=config,
            logs=logs,
        )
        wait_for(
            "the monitor's /readyz",
            lambda: http_get(f"http://127.0.0.1:{metrics_port}/readyz")[0] == 200,
            90,
            stack.tail,
        )

        def flowed() -> bool:
            text = stack.metrics()
            return (
                sample(text, "warwatch_alerts_total", rule="bakhmut") is not None
                and sample(text, "warwatch_collector_items_total", source="telegram_web", channel="ab3army") == 2
            )

        wait_for("alerts from the corpus and the channels", flowed, 90, stack.tail)
        with logs["prometheus"].open("wb") as out:
            prometheus = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={prometheus_config(tmp, metrics_port)}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=env,
            )
        wait_for("prometheus /-/ready", lambda: http_get(f"{stack.prometheus_url}/-/ready")[0] == 200, 60, stack.tail)
        wait_for("3 scrapes of the monitor", has_samples(stack, 'up{job="warwatch"}'), 60, stack.tail)
        assert [s["value"][1] for s in stack.series('up{job="warwatch"}')] == ["1"], stack.tail()
        provoke_events(stack)
        for selector in (
            "warwatch_dead_letters_total",
            "warwatch_reclaimed_total",
            "warwatch_duplicates_total",
            "warwatch_rules_reloads_total",
            "warwatch_stream_trimmed_total",
            "warwatch_notification_messages_total",
            "warwatch_collector_rejected_total",
        ):
            wait_for(f"samples of {selector}", has_samples(stack, selector), 60, stack.tail)
        yield stack
    finally:
        stop_process(prometheus)
        stop_process(monitor)
        client.close()
        services.shutdown()
        services.server_close()


# --- tests ----------------------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    """The dashboard has uid "warwatch", a datasource variable used by every query, and rate windows from Grafana."""
    board = dashboard()
    assert board["uid"] == "warwatch" and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("source", "channel"):
        assert variables[name]["multi"] and variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    panels = list(iter_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    problems = []
    for panel in panels:
        if panel["type"] == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{panel['title']}: panel datasource")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{panel['title']}: target datasource")
            for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
                if window not in ("$__rate_interval", "$__range"):
                    problems.append(f"{panel['title']}: fixed window [{window}] in {target['expr']}")
    assert not problems, problems
    rows = {p["title"] for p in board["panels"] if p["type"] == "row"}
    assert rows >= {"Overview", "Channels", "Pipeline", "Alerts and notifications", "Collectors", "Redis"}


def test_allowlist_names_real_dashboard_queries() -> None:
    """Every allowlisted expression is still on the dashboard (a stale entry would hide nothing and mislead)."""
    exprs = {expr for _, expr in panel_queries()}
    assert not set(ALLOWLIST) - exprs, sorted(set(ALLOWLIST) - exprs)


@needs_prometheus
@pytest.mark.parametrize("values", [ALL_VALUES, SELECTED_VALUES], ids=["all", "selected"])
def test_every_panel_query_returns_data(stack: Stack, values: dict[str, str]) -> None:
    """Each panel query, with the variables at "All" or at a selection, runs without error and returns series."""
    failures = []
    for title, expr in panel_queries():
        query = substitute(expr, values)
        reply = stack.query(query)
        if reply.get("status") != "success":
            failures.append(f"[{title}] {query}\n    error: {reply.get('error')}")
        elif not reply["data"]["result"] and expr not in ALLOWLIST:
            failures.append(f"[{title}] {query}\n    no series")
    assert not failures, "dashboard queries failing:\n" + "\n".join(failures) + "\n" + stack.tail()


@needs_prometheus
def test_template_variables_list_sources_and_channels(stack: Stack) -> None:
    """label_values() of the source and channel variables resolve to the running sources and channels."""
    queries = variable_queries()
    assert set(queries) == {"source", "channel"}
    resolved = {}
    for name, query in queries.items():
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        assert match, f"{name}: not a label_values(metric, label) query: {query}"
        selector, label = substitute(match.group(1), ALL_VALUES), match.group(2)
        url = f"{stack.prometheus_url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
        status, body = http_get(url)
        assert status == 200, f"{name}: {body}"
        resolved[name] = set(json.loads(body)["data"])
    assert resolved["source"] >= {"corpus", "telegram_web"}, resolved
    assert resolved["channel"] >= {"corpus", "ab3army", "nexta_live"}, resolved


@needs_prometheus
def test_alert_rules_evaluate_on_the_live_metrics(stack: Stack) -> None:
    """alerts.yml evaluates without errors on real metrics; the provoked dead letter fires DeadLettersGrowing."""
    status, body = http_get(f"{stack.prometheus_url}/api/v1/rules")
    assert status == 200, body
    groups = json.loads(body)["data"]["groups"]
    assert {g["name"] for g in groups} >= {"warwatch", "warwatch-channel-silence"}
    broken = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"] if r.get("health") == "err"]
    assert not broken, broken
    thresholds = stack.series('warwatch:channel_silence_threshold_seconds{source="telegram_web"}')
    assert {s["metric"]["channel"] for s in thresholds} == {"ab3army", "nexta_live"}
    # Labelled by stage when the per-stage counter caught it, else by job from the dead stream's length
    # (the counter's series is born at 1 with the first dead letter, so increase() cannot see that one).
    wait_for(
        "DeadLettersGrowing to fire",
        lambda: bool(stack.series('ALERTS{alertname="DeadLettersGrowing", alertstate="firing"}')),
        30,
        stack.tail,
    )
    # The channels posted minutes ago: nothing is silent.
    assert stack.series('ALERTS{alertname="ChannelSilent"}') == []
