"""Checkpoint schema, versioned with ``PRAGMA user_version`` and applied as forward migrations.

The ``messages`` table keeps the seed's column names (``status``, ``session``, ``processed_at``,
``target_msg_id``) so its monitoring queries still work verbatim.
"""

from __future__ import annotations

APPLICATION_ID = 0x54504931  # "TPI1": tells a telepi checkpoint from any other SQLite file

MIGRATIONS: tuple[str, ...] = (
    # version 1
    """
    CREATE TABLE routes (
        id           INTEGER PRIMARY KEY,
        source_chat  TEXT NOT NULL,
        target_chat  TEXT NOT NULL,
        label        TEXT NOT NULL DEFAULT '',
        high_water   INTEGER NOT NULL DEFAULT 0,
        created_at   REAL NOT NULL,
        UNIQUE (source_chat, target_chat)
    );

    CREATE TABLE messages (
        route_id         INTEGER NOT NULL REFERENCES routes(id),
        source_msg_id    INTEGER NOT NULL,
        grouped_id       INTEGER,
        topic_id         INTEGER,
        status           TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'processing', 'done', 'failed', 'skipped')),
        session          TEXT,            -- lease holder while processing, who finished it afterwards
        claimed_at       REAL,
        lease_expires    REAL,            -- set at claim time, extended by heartbeats
        send_session     TEXT,            -- who started sending (a takeover must look before resending)
        send_started_at  REAL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        not_before       REAL,            -- retry backoff
        last_error       TEXT,
        skip_reason      TEXT,
        random_id        INTEGER NOT NULL, -- fixed per item: a resend is deduplicated by Telegram
        target_msg_id    INTEGER,
        enqueued_at      REAL NOT NULL,
        processed_at     REAL,
        PRIMARY KEY (route_id, source_msg_id)
    ) WITHOUT ROWID;

    -- Open work only: claims and the low-water mark stay fast however large the done history grows.
    CREATE INDEX messages_open ON messages (route_id, source_msg_id)
        WHERE status IN ('pending', 'processing', 'failed');
    CREATE INDEX messages_album ON messages (route_id, grouped_id) WHERE grouped_id IS NOT NULL;
    CREATE INDEX messages_holder ON messages (session, status);
    CREATE INDEX messages_processed ON messages (processed_at);

    CREATE TABLE topics (
        route_id          INTEGER NOT NULL REFERENCES routes(id),
        source_topic_id   INTEGER NOT NULL,
        target_topic_id   INTEGER,
        title             TEXT NOT NULL DEFAULT '',
        holder            TEXT,
        lease_expires     REAL,
        updated_at        REAL NOT NULL,
        PRIMARY KEY (route_id, source_topic_id)
    );

    CREATE TABLE sessions (
        name        TEXT PRIMARY KEY,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        user_id     INTEGER,
        started_at  REAL NOT NULL,
        last_seen   REAL NOT NULL,
        state       TEXT NOT NULL DEFAULT 'running',
        detail      TEXT NOT NULL DEFAULT '',
        wait_until  REAL
    );
    """,
    # version 2: skipped rows by reason: `telepi status` counts them and lists the latest per reason, and
    # `telepi retry --skipped REASON` finds them, without scanning the done history
    """
    CREATE INDEX messages_skipped ON messages (route_id, skip_reason, processed_at) WHERE status = 'skipped';
    """,
    # version 3: topics created exactly once across accounts and crashes; routes whose ids are per account
    """
    ALTER TABLE topics ADD COLUMN random_id INTEGER;        -- fixed per (route, source topic, creation)
    ALTER TABLE topics ADD COLUMN creator_user_id INTEGER;  -- the account that last claimed the creation
    ALTER TABLE routes ADD COLUMN bound_user_id INTEGER;    -- basic groups / private chats: the one account
    """,
    # version 4 (telepi verify --adopt): target ids up to this one were matched against the source, and
    # what was not matched there is not telepi's; start-up only looks for unrecorded copies above it
    """
    ALTER TABLE routes ADD COLUMN adopted_through INTEGER;
    """,
    # version 5: source edits and deletes as durable work, done by the account that made the copy
    """
    CREATE TABLE changes (
        route_id        INTEGER NOT NULL REFERENCES routes(id),
        source_msg_id   INTEGER NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('edit', 'delete')),
        edit_date       INTEGER,          -- edits: the source's edit_date this change brings (the latest seen)
        author_user_id  INTEGER,          -- the account that made the copy: only it may edit (or delete) it
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'done', 'failed')),
        holder          TEXT,
        lease_expires   REAL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        not_before      REAL,
        last_error      TEXT,
        note            TEXT,             -- done without a change: why (copy gone, not copied, forwarded …)
        updated_at      REAL NOT NULL,
        PRIMARY KEY (route_id, source_msg_id, kind)
    ) WITHOUT ROWID;
    CREATE INDEX changes_open ON changes (route_id, status) WHERE status IN ('pending', 'processing');
    """,
    # version 6: facts a running session records with its heartbeat, so `telepi status` judges its health
    # from them (not from the last state a process wrote before it died), and its metrics
    """
    ALTER TABLE sessions ADD COLUMN heartbeat_every REAL;   -- seconds between two heartbeats at most
    ALTER TABLE sessions ADD COLUMN link_down_since REAL;   -- Telegram unreachable since (reconnecting)
    ALTER TABLE sessions ADD COLUMN bytes_down INTEGER NOT NULL DEFAULT 0;  -- streamed from the source
    ALTER TABLE sessions ADD COLUMN bytes_up INTEGER NOT NULL DEFAULT 0;    -- uploaded to the target
    CREATE TABLE flood_waits (
        session   TEXT NOT NULL,
        method    TEXT NOT NULL,
        waits     INTEGER NOT NULL DEFAULT 0,
        seconds   REAL NOT NULL DEFAULT 0,  -- every FLOOD_WAIT Telegram asked of this method, summed
        last_at   REAL NOT NULL,
        PRIMARY KEY (session, method)
    ) WITHOUT ROWID;
    """,
    # version 7: the source channel's update state (its pts) up to which edits and deletes are recorded in
    # `changes`: a start asks Telegram for the difference from it (updates.getChannelDifference)
    """
    ALTER TABLE routes ADD COLUMN source_pts INTEGER;
    """,
    # version 8: what each account learned of Telegram's quotas (telepi/engine/limits/budget.py), per account
    # (sessions.user_id: an account's sessions on any host share it) and method group, with when and why
    """
    CREATE TABLE paces (
        user_id     INTEGER NOT NULL,
        grp         TEXT NOT NULL,     -- 'send' (SendMessage, SendMedia, SendMultiMedia) or the method's name
        calls       INTEGER NOT NULL,  -- at most this many calls per period, spread evenly
        period      REAL NOT NULL,
        learned_at  REAL NOT NULL,
        reason      TEXT NOT NULL,     -- 'FLOOD_WAIT 2983 s'
        session     TEXT NOT NULL,     -- the session that met it
        wait_until  REAL,              -- the end of that wait: a restart sits out the rest
        PRIMARY KEY (user_id, grp)
    ) WITHOUT ROWID;
    """,
    # version 9 (ORDERED=topic): open work per source topic, so a topic's head and a claim of one topic's
    # run read only that topic's open rows
    """
    CREATE INDEX messages_topic_open ON messages (route_id, topic_id, source_msg_id)
        WHERE status IN ('pending', 'processing', 'failed');
    """,
    # version 10: done messages counted per route and session as they become done, so `telepi status` reads
    # the counts instead of counting a history that only grows; triggers keep them, whatever writes a row
    """
    CREATE TABLE done_counts (
        route_id  INTEGER NOT NULL REFERENCES routes(id),
        session   TEXT NOT NULL,                -- '' for rows done without one (telepi verify --adopt)
        done      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (route_id, session)
    ) WITHOUT ROWID;
    INSERT INTO done_counts (route_id, session, done)
        SELECT route_id, COALESCE(session, ''), COUNT(*) FROM messages WHERE status = 'done'
        GROUP BY route_id, COALESCE(session, '');
    -- Open rows by status (counts and leases read no row of the table) and the open rows with an error (the
    -- latest failures): both as small as the work in flight, whatever the size of the history.
    CREATE INDEX messages_open_status ON messages (route_id, status, source_msg_id)
        WHERE status IN ('pending', 'processing', 'failed');
    CREATE INDEX messages_errors ON messages (processed_at)
        WHERE last_error IS NOT NULL AND status IN ('failed', 'pending');
    CREATE TRIGGER done_counts_insert AFTER INSERT ON messages WHEN NEW.status = 'done'
    BEGIN
        INSERT INTO done_counts (route_id, session, done) VALUES (NEW.route_id, COALESCE(NEW.session, ''), 1)
            ON CONFLICT (route_id, session) DO UPDATE SET done = done + 1;
    END;
    CREATE TRIGGER done_counts_leave AFTER UPDATE OF status, session ON messages
        WHEN OLD.status = 'done' AND (NEW.status != 'done' OR NEW.session IS NOT OLD.session)
    BEGIN
        UPDATE done_counts SET done = done - 1 WHERE route_id = OLD.route_id AND session = COALESCE(OLD.session, '');
    END;
    CREATE TRIGGER done_counts_enter AFTER UPDATE OF status, session ON messages
        WHEN NEW.status = 'done' AND (OLD.status != 'done' OR NEW.session IS NOT OLD.session)
    BEGIN
        INSERT INTO done_counts (route_id, session, done) VALUES (NEW.route_id, COALESCE(NEW.session, ''), 1)
            ON CONFLICT (route_id, session) DO UPDATE SET done = done + 1;
    END;
    CREATE TRIGGER done_counts_delete AFTER DELETE ON messages WHEN OLD.status = 'done'
    BEGIN
        UPDATE done_counts SET done = done - 1 WHERE route_id = OLD.route_id AND session = COALESCE(OLD.session, '');
    END;
    """,
    # version 11: when the send mark's session first started sending the row; a retry by the same session
    # keeps it, so a takeover's search for an earlier copy covers every attempt that may have landed
    """
    ALTER TABLE messages ADD COLUMN send_first_at REAL;
    UPDATE messages SET send_first_at = send_started_at WHERE send_started_at IS NOT NULL;
    """,
)

LATEST_VERSION = len(MIGRATIONS)
