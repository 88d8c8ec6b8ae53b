"""The status page's HTML: the snapshot ``telepi status`` shows, as one server-rendered page that reloads
itself (``<meta http-equiv="refresh">``, no JavaScript).

Every number sits in an element whose ``data-key`` is its path in ``telepi status --json``
(``routes.0.finished``, ``sessions.1.leases_held``), so a script, or the browser test, can read the page and
find the same numbers. Text from Telegram (titles, errors) is escaped, and its control characters made
visible as in the terminal.
"""

from __future__ import annotations

import time
from html import escape

from telepi.checkpoint.model import StatusReport
from telepi.commands.live import Snapshot, eta_text, pace_line, snapshot
from telepi.commands.sessionhealth import ago, judge
from telepi.commands.status import clean

REFRESH_SECONDS = 5
STATUSES = ("pending", "processing", "done", "failed", "skipped")

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
.meta { color: #666; margin: 0 0 1em; }
table { border-collapse: collapse; } th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f3f3f3; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.fix td { color: #b00020; font-weight: 600; } tr.warn td { color: #8a5a00; }
p.fix { color: #b00020; font-weight: 600; } .empty { color: #666; }
"""


def _text(value: object) -> str:
    return escape(clean(str(value)))


def _cell(value: object, key: str | None = None, *, number: bool = False) -> str:
    attrs = (f' data-key="{escape(key)}"' if key else "") + (' class="n"' if number else "")
    return f"<td{attrs}>{_text(value)}</td>"


def _table(title: str, columns: tuple[str, ...], rows: list[str], section: str) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    return f'<h2>{escape(title)}</h2><table id="{section}"><tr>{head}</tr>{"".join(rows)}</table>'


def _routes(report: StatusReport, view: Snapshot) -> str:
    rows = []
    for i, (route, line) in enumerate(zip(report.routes, view.routes, strict=True)):
        key = f"routes.{i}"
        percent = f"{100 * route.finished / route.known:.1f}%" if route.known else "-"
        counts = "".join(
            _cell(route.counts.get(status, 0), f"{key}.counts.{status}", number=True) for status in STATUSES
        )
        rows.append(
            f'<tr data-route="{route.route.id}">'
            + _cell(route.route.label, f"{key}.route.label")
            + f'<td class="n"><span data-key="{key}.finished">{route.finished}</span>/'
            f'<span data-key="{key}.known">{route.known}</span> {percent}</td>'
            + counts
            + _cell(route.filtered, f"{key}.filtered", number=True)
            + _cell("-" if route.low_water is None else route.low_water, f"{key}.low_water", number=True)
            + _cell("—" if line.per_minute is None else f"{line.per_minute:.1f}", f"{key}.rate_per_minute", number=True)
            + _cell(eta_text(line.eta_seconds), f"{key}.eta_seconds", number=True)
            + "</tr>"
        )
    if not rows:
        return '<h2>Routes</h2><p class="empty">No routes yet: sessions have started but nothing has been planned.</p>'
    columns = ("route", "progress", *STATUSES, "filtered", "next in order", "per min", "ETA")
    return _table("Routes", columns, rows, "routes")


def _accounts(report: StatusReport, view: Snapshot) -> str:
    if not report.sessions:
        return '<h2>Accounts</h2><p class="empty">No session has registered yet.</p>'
    now = report.generated_at
    rows, fixes, paces = [], [], []
    for i, (session, account) in enumerate(zip(report.sessions, view.accounts, strict=True)):
        key = f"sessions.{i}"
        verdict = judge(session, now)
        css = "fix" if session.needs_action else "warn" if verdict.state in ("stalled", "dead", "reconnecting") else ""
        rows.append(
            f'<tr data-session="{escape(session.name)}"' + (f' class="{css}"' if css else "") + ">"
            + _cell(session.name, f"{key}.name")
            + _cell(f"{session.host}:{session.pid}")
            + _cell(verdict.text, f"{key}.health")
            + _cell(account.line(), f"{key}.activity")
            + _cell(f"{ago(now - session.last_seen)} ago")
            + _cell(session.done_total, f"{key}.done_total", number=True)
            + _cell(f"{session.per_minute:.1f}", f"{key}.per_minute", number=True)
            + _cell(account.leases, f"{key}.leases_held", number=True)
            + "</tr>"
        )  # fmt: skip
        if session.needs_action:  # the fix in full, as the terminal repeats it below its table
            fix = session.detail or session.state
            fixes.append(
                f'<p class="fix">{_text(session.name)} needs you: <span data-key="{key}.fix">{_text(fix)}</span></p>'
            )
        paces += [f"<li>{_text(session.name)}: {_text(pace_line(pace))}</li>" for pace in session.paces]
    columns = ("session", "host:pid", "state", "doing", "last heartbeat", "copied", "per min", "leases")
    learned = f"<ul>{''.join(paces)}</ul>" if paces else ""
    return _table("Accounts", columns, rows, "accounts") + "".join(fixes) + learned


def _leases(report: StatusReport) -> str:
    rows = []
    for i, route in enumerate(report.routes):
        for j, lease in enumerate(route.leases):
            key = f"routes.{i}.leases.{j}"
            rows.append(
                "<tr>"
                + _cell(route.route.label)
                + _cell(lease.source_msg_id, f"{key}.source_msg_id", number=True)
                + _cell(lease.session, f"{key}.session")
                + _cell(ago(lease.age_seconds))
                + _cell("sending" if lease.sending else "preparing")
                + "</tr>"
            )
        for lease in route.expired:
            rows.append(
                "<tr class=warn>"
                + _cell(route.route.label)
                + _cell(lease.source_msg_id, number=True)
                + _cell(lease.session)
                + _cell(f"expired {ago(-lease.expires_in)} ago")
                + _cell("awaiting takeover")
                + "</tr>"
            )
    return _table("Leases", ("route", "message", "session", "held for", "phase"), rows, "leases") if rows else ""


def _skipped(report: StatusReport) -> str:
    rows = []
    for i, route in enumerate(report.routes):
        for j, entry in enumerate(route.skipped):
            key = f"routes.{i}.skipped.{j}"
            rows.append(
                "<tr>"
                + _cell(route.route.label)
                + _cell(entry.reason or "-", f"{key}.reason")
                + _cell(entry.count, f"{key}.count", number=True)
                + _cell(", ".join(map(str, entry.latest)), f"{key}.latest")
                + "</tr>"
            )
    columns = ("route", "reason", "messages", "latest ids")
    return _table("Skipped by reason", columns, rows, "skipped") if rows else ""


def _failures(report: StatusReport) -> str:
    labels = {route.route.id: route.route.label for route in report.routes}
    now = report.generated_at
    rows = []
    for k, failure in enumerate(report.failures):
        key = f"failures.{k}"
        rows.append(
            "<tr>"
            + _cell(labels.get(failure.route_id, failure.route_id))
            + _cell(failure.source_msg_id, f"{key}.source_msg_id", number=True)
            + _cell(failure.status, f"{key}.status")
            + _cell(failure.attempts, f"{key}.attempts", number=True)
            + _cell(f"{ago(now - failure.at)} ago" if failure.at else "-")
            + _cell(failure.error, f"{key}.error")
            + "</tr>"
        )
    columns = ("route", "message", "status", "attempts", "when", "error")
    return _table("Latest failures", columns, rows, "failures") if rows else ""


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def page(where: str, report: StatusReport | None) -> str:
    """The whole page for ``report`` (None: no session has created the checkpoint yet), from the snapshot
    ``telepi status --json`` shows."""
    if report is None:
        body = (
            f'<h1>telepi</h1><p class="meta">No checkpoint yet at {_text(where)}: no session has run.</p>'
            "<p>Start one with: <code>telepi run sessions/session1</code> (or "
            "<code>systemctl start telepi@session1</code>).</p>"
        )
        return _document("telepi: no checkpoint yet", body)
    view = snapshot(report)
    at = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.generated_at))
    done = sum(route.finished for route in report.routes)
    known = sum(route.known for route in report.routes)
    body = (
        f"<h1>telepi: {done}/{known} done</h1>"
        f'<p class="meta">Checkpoint {_text(report.path)} · read at <span id="generated-at">{escape(at)}</span> · '
        f"refreshes every {REFRESH_SECONDS} s · read-only · the same numbers as <code>telepi status --json</code> "
        '(<a href="status.json">status.json</a>)</p>'
        + _routes(report, view)
        + _accounts(report, view)
        + _leases(report)
        + _skipped(report)
        + _failures(report)
    )
    return _document(f"telepi: {done}/{known} done", body)


def error_page(sentence: str) -> str:
    """What a checkpoint that cannot be read shows instead: the sentence naming the fix, and it retries."""
    body = f'<h1>telepi</h1><p class="fix" id="error">{_text(sentence)}</p>'
    return _document("telepi: checkpoint unreadable", body)
