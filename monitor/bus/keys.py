"""Every Redis key, stream and group name the monitor uses, in one place.

The stream and group names are a contract (DESIGN.md): users' dashboards and scripts read them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Consumer groups (contract).
GROUP_NORMALIZER = "normalizer"
GROUP_ALERTER = "alerter"
GROUP_ARCHIVER = "archiver"
GROUP_NOTIFIER = "notifier"

# Stream suffixes (contract): {prefix}:raw, {prefix}:items, {prefix}:alerts, {prefix}:dead.
RAW = "raw"
ITEMS = "items"
ALERTS = "alerts"
DEAD = "dead"

DEFAULT_PREFIX = "warwatch"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix; tests give each test its own prefix."""

    prefix: str = DEFAULT_PREFIX

    def stream(self, name: str) -> str:
        """A stream by its short name (``raw``, ``items``, ``alerts``, ``dead``)."""
        return f"{self.prefix}:{name}"

    @property
    def raw(self) -> str:
        return self.stream(RAW)

    @property
    def items(self) -> str:
        return self.stream(ITEMS)

    @property
    def alerts(self) -> str:
        return self.stream(ALERTS)

    @property
    def dead(self) -> str:
        return self.stream(DEAD)

    def seen(self, dedup_key: str) -> str:
        """Set once an item event (new, edit by text hash, delete) has entered the raw stream."""
        return f"{self.prefix}:seen:{dedup_key}"

    def emitted(self, stage: str, dedup_key: str) -> str:
        """Set once a stage has written its output for one input, so a redelivery writes nothing."""
        return f"{self.prefix}:emitted:{stage}:{dedup_key}"

    def seen_alert(self, alert_id: str) -> str:
        """Set once an alert has been written to the alerts stream."""
        return f"{self.prefix}:seen:alert:{alert_id}"

    def delivered(self, sink: str, alert_id: str) -> str:
        """Set once an alert has been delivered to one sink."""
        return f"{self.prefix}:delivered:{sink}:{alert_id}"

    def outbox(self, sink: str) -> str:
        """Sorted set of the alert ids waiting for delivery to one sink, scored by when they are due."""
        return f"{self.prefix}:notify:{sink}:outbox"

    def outbox_payload(self, sink: str) -> str:
        """Hash alert id -> alert JSON, for the alerts in a sink's outbox."""
        return f"{self.prefix}:notify:{sink}:payload"

    def outbox_attempts(self, sink: str) -> str:
        """Hash alert id -> failed delivery attempts so far, for a sink's outbox."""
        return f"{self.prefix}:notify:{sink}:attempts"

    def outbox_digest(self, sink: str) -> str:
        """Hash alert id -> digest key (rule and period) for alerts of rules with ``aggregate``."""
        return f"{self.prefix}:notify:{sink}:digest"

    def sink_rate(self, sink: str) -> str:
        """Prefix of the per-window counters of messages sent to a sink (``...:rate:<window number>``)."""
        return f"{self.prefix}:notify:{sink}:rate"

    def cursor(self, source: str, channel: str) -> str:
        """A collector's checkpoint for one channel: last message id, since_id or ETag."""
        return f"{self.prefix}:cursor:{source}:{channel}"

    def window(self, rule: str, group: str) -> str:
        """Sorted set of the items (scored by time) a ``frequency`` rule counts, per group key."""
        return f"{self.prefix}:rule:{rule}:window:{group}"

    def first_seen(self, rule: str, group: str) -> str:
        """Set of the terms a ``first_seen`` rule has already seen, per group key."""
        return f"{self.prefix}:rule:{rule}:seen:{group}"

    def last_match(self, rule: str) -> str:
        """Hash of group key -> JSON of the newest matching item, for ``flatline`` rules."""
        return f"{self.prefix}:rule:{rule}:last"

    def cooldown(self, rule: str, group: str) -> str:
        """Set (with the alert id, for ``realert``) while a rule and group key are cooling down."""
        return f"{self.prefix}:rule:{rule}:cooldown:{group}"

    def cluster(self, cluster_id: str) -> str:
        """Hash ``first`` (item id), ``first_seen`` (unix time), ``size`` of one story cluster."""
        return f"{self.prefix}:cluster:{cluster_id}"

    def cluster_members(self, cluster_id: str) -> str:
        """Sorted set item id -> unix time (published, else collected) of a cluster's members."""
        return f"{self.prefix}:cluster:{cluster_id}:members"

    def cluster_items(self, epoch: int) -> str:
        """Hash item ref -> msgpack record (time, cluster, MinHash, anchors, item id) for one epoch."""
        return f"{self.prefix}:cluster:index:{epoch}:items"

    def cluster_bands(self, epoch: int) -> str:
        """Hash LSH band hash -> item ref (last writer) for one epoch."""
        return f"{self.prefix}:cluster:index:{epoch}:bands"

    def cluster_anchors(self, epoch: int) -> str:
        """Hash strong anchor -> item ref (last writer) for one epoch."""
        return f"{self.prefix}:cluster:index:{epoch}:anchors"

    def cluster_origins(self, epoch: int) -> str:
        """Hash provenance key -> cluster id (first writer) for one epoch."""
        return f"{self.prefix}:cluster:index:{epoch}:origins"

    def consumer_lease(self, consumer: str) -> str:
        """Held (with a TTL, renewed) by the process using a consumer name, so two never share one."""
        return f"{self.prefix}:consumer:{consumer}"

    @property
    def telegram_entities(self) -> str:
        """Hash: configured channel reference -> JSON of its resolved (id, access_hash, username, title)."""
        return f"{self.prefix}:telegram:entities"

    @property
    def channel_last_seen(self) -> str:
        """Hash ``source:channel`` -> JSON of the newest item seen per channel (for ``monitor status``)."""
        return f"{self.prefix}:channels:last"

    def stream_groups(self) -> dict[str, tuple[str, ...]]:
        """Each pipeline stream and the groups that must acknowledge its entries before trimming."""
        return {
            self.raw: (GROUP_NORMALIZER,),
            self.items: (GROUP_ALERTER,),
            self.alerts: (GROUP_NOTIFIER,),
            self.dead: (),
        }
