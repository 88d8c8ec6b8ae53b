"""``telepi status --prometheus``: the checkpoint's report as Prometheus metrics, per route and session.

Built from the same report as the tables (read-only on the checkpoint) by a prometheus-client collector;
printed for a scrape wrapper, or written atomically as a file for node_exporter's textfile collector.
Counters (flood waits, transfer bytes) are the running session's own since it started: they reset when
it restarts, which ``rate()`` and ``increase()`` expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, StateSetMetricFamily
from prometheus_client.registry import Collector

from telepi.checkpoint.model import STATUSES, StatusReport
from telepi.commands.sessionhealth import STATES, judge
from telepi.errors import UserFixableError


class CheckpointCollector(Collector):
    def __init__(self, report: StatusReport | None) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        exists = GaugeMetricFamily("telepi_checkpoint_exists", "1 when the checkpoint file exists (0: no run yet)")
        exists.add_metric([], 0 if self.report is None else 1)
        yield exists
        if self.report is not None:
            yield from _routes(self.report)
            yield from _sessions(self.report)


def _routes(report: StatusReport) -> Iterator[Metric]:
    now = report.generated_at
    labels = ["route", "title"]
    messages = GaugeMetricFamily("telepi_route_messages", "Messages of the route by status", labels=[*labels, "status"])
    rate = GaugeMetricFamily(
        "telepi_route_copied_per_minute", "Messages copied per minute (last 5 minutes)", labels=labels
    )
    lag = GaugeMetricFamily(
        "telepi_route_lag_seconds",
        "Seconds since the oldest message still pending or leased was planned (0: caught up with the source)",
        labels=labels,
    )
    leases = GaugeMetricFamily("telepi_route_leases_held", "Live leases per holder", labels=[*labels, "session"])
    expired = GaugeMetricFamily("telepi_route_leases_expired", "Leases that ran out, awaiting takeover", labels=labels)
    for route in report.routes:
        key = [str(route.route.id), route.route.label]
        for status in STATUSES:
            messages.add_metric([*key, status], route.counts.get(status, 0))
        rate.add_metric(key, route.done_last_5min / 5.0)
        lag.add_metric(key, 0.0 if route.oldest_open_at is None else max(0.0, now - route.oldest_open_at))
        held: dict[str, int] = {}
        for lease in route.leases:
            held[lease.session] = held.get(lease.session, 0) + 1
        for session, count in sorted(held.items()):
            leases.add_metric([*key, session], count)
        expired.add_metric(key, len(route.expired))
    yield from (messages, rate, lag, leases, expired)


def _sessions(report: StatusReport) -> Iterator[Metric]:
    now = report.generated_at
    state = StateSetMetricFamily(
        "telepi_session_state", "What the session is doing, judged from the checkpoint's facts", labels=["session"]
    )
    heartbeat = GaugeMetricFamily(
        "telepi_session_heartbeat_age_seconds", "Seconds since the last heartbeat", labels=["session"]
    )
    reconnecting = GaugeMetricFamily(
        "telepi_session_reconnecting_seconds",
        "Seconds Telegram has been unreachable (0: connected)",
        labels=["session"],
    )
    rate = GaugeMetricFamily(
        "telepi_session_copied_per_minute", "Messages copied per minute (last 5 minutes)", labels=["session"]
    )
    done = GaugeMetricFamily("telepi_session_messages_done", "Messages this session copied", labels=["session"])
    waiting = GaugeMetricFamily(
        "telepi_session_flood_wait_remaining_seconds", "Seconds left of the current flood wait", labels=["session"]
    )
    floods = CounterMetricFamily(
        "telepi_flood_wait_seconds", "Seconds of FLOOD_WAIT Telegram asked, by method", labels=["session", "method"]
    )
    flood_count = CounterMetricFamily(
        "telepi_flood_waits", "FLOOD_WAITs Telegram answered, by method", labels=["session", "method"]
    )
    transfer = CounterMetricFamily(
        "telepi_transfer_bytes",
        "Bytes streamed by the reupload since the session started",
        labels=["session", "direction"],
    )
    for session in report.sessions:
        verdict = judge(session, now)
        name = [session.name]
        state.add_metric(name, {value: value == verdict.state for value in STATES})
        heartbeat.add_metric(name, max(0.0, now - session.last_seen))
        reconnecting.add_metric(name, 0.0 if verdict.since is None else max(0.0, now - verdict.since))
        rate.add_metric(name, session.per_minute)
        done.add_metric(name, session.done_total)
        left = session.wait_until - now if verdict.state == "flood-wait" and session.wait_until else 0.0
        waiting.add_metric(name, left)
        for flood in session.flood_waits:
            floods.add_metric([session.name, flood.method], flood.seconds)
            flood_count.add_metric([session.name, flood.method], flood.waits)
        transfer.add_metric([session.name, "down"], session.bytes_down)
        transfer.add_metric([session.name, "up"], session.bytes_up)
    yield from (state, heartbeat, reconnecting, rate, done, waiting, floods, flood_count, transfer)


def registry(report: StatusReport | None) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(CheckpointCollector(report))
    return found


def exposition(report: StatusReport | None) -> str:
    """The Prometheus text format (0.0.4)."""
    return generate_latest(registry(report)).decode()


def write_textfile(report: StatusReport | None, path: Path) -> None:
    """Written beside ``path`` and renamed over it, so node_exporter never reads half a file."""
    try:
        write_to_textfile(str(path), registry(report))
    except OSError as exc:
        raise UserFixableError(
            f"cannot write the metrics to {path} ({exc.strerror or exc}): name a file in an existing directory "
            "this user may write (node_exporter's --collector.textfile.directory)."
        ) from None
