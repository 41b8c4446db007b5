"""Numbered schema migrations of hive.sqlite; `PRAGMA user_version` is the last applied."""

from __future__ import annotations

APPLICATION_ID = 0x48495645
"""'HIVE': marks a file as ours, so a foreign database is refused rather than written to."""

MIGRATIONS: list[list[str]] = [
    # 1: broker, approvals, agents, transients
    [
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            body TEXT NOT NULL,
            idempotency_key TEXT,
            sent_at REAL NOT NULL,
            delivered_at REAL
        )""",
        """CREATE UNIQUE INDEX messages_idempotency
            ON messages(sender, idempotency_key) WHERE idempotency_key IS NOT NULL""",
        """CREATE INDEX messages_undelivered
            ON messages(recipient, id) WHERE delivered_at IS NULL""",
        "CREATE INDEX messages_by_recipient ON messages(recipient, id)",
        """CREATE INDEX messages_delivered_at
            ON messages(delivered_at) WHERE delivered_at IS NOT NULL""",
        """CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            agent TEXT NOT NULL,
            requester TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at REAL NOT NULL,
            resolved_at REAL,
            reason TEXT
        )""",
        "CREATE INDEX approvals_pending ON approvals(status, id)",
        """CREATE TABLE agents (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            desired TEXT NOT NULL,
            web_port INTEGER NOT NULL UNIQUE,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE transients (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT
        )""",
        "CREATE INDEX transients_by_agent ON transients(agent, started_at)",
    ],
    # 2: helper events travel as messages with the event attached (JSON)
    [
        "ALTER TABLE messages ADD COLUMN event TEXT",
    ],
    # 3: questions and reminders
    [
        """CREATE TABLE questions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            asker TEXT NOT NULL,
            target TEXT,
            question TEXT NOT NULL,
            options TEXT,
            created_at REAL NOT NULL,
            expires_at REAL,
            status TEXT NOT NULL DEFAULT 'pending',
            answer TEXT,
            answerer TEXT,
            resolved_at REAL
        )""",
        "CREATE INDEX questions_pending ON questions(status, expires_at)",
        """CREATE TABLE reminders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent TEXT NOT NULL,
            message TEXT NOT NULL,
            due_at REAL NOT NULL,
            file_path TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            payload TEXT,
            payload_note TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL
        )""",
        "CREATE INDEX reminders_due ON reminders(status, due_at)",
    ],
    # 4: config as code: proposed commits and their diffs; what each agent runs
    [
        "ALTER TABLE approvals ADD COLUMN commit_sha TEXT",
        "ALTER TABLE approvals ADD COLUMN diff TEXT",
        "ALTER TABLE agents ADD COLUMN deployed_commit TEXT",
    ],
    # 5: the login state each agent's overseer was last told about (told once, not per start)
    [
        "ALTER TABLE agents ADD COLUMN login_told TEXT",
    ],
    # 6: what each turn cost (summed over the budget windows) and the budget raises granted
    [
        """CREATE TABLE turn_usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent TEXT NOT NULL,
            turn_id TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL NOT NULL,
            model TEXT NOT NULL,
            result_kind TEXT NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_input_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            tools TEXT NOT NULL DEFAULT '{}',
            recorded_at REAL NOT NULL,
            UNIQUE (agent, turn_id)
        )""",
        "CREATE INDEX turn_usage_window ON turn_usage(agent, ended_at)",
        """CREATE TABLE budget_grants (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent TEXT NOT NULL,
            budget_window TEXT NOT NULL,
            extra_tokens INTEGER NOT NULL DEFAULT 0,
            extra_usd REAL NOT NULL DEFAULT 0,
            granted_at REAL NOT NULL,
            approval_id INTEGER,
            UNIQUE (approval_id, budget_window)
        )""",
        "CREATE INDEX budget_grants_by_agent ON budget_grants(agent, granted_at)",
    ],
    # 7: the one-tap action links used (each works once), kept until they expire
    [
        """CREATE TABLE action_links_used (
            nonce TEXT PRIMARY KEY,
            used_at REAL NOT NULL,
            expires REAL NOT NULL
        )""",
    ],
    # 8: more than one host: messages for other hosts' agents until their stream holds them,
    # and the last known place of every other host's agent (sends to them are accepted
    # while NATS is away, across restarts)
    [
        """CREATE TABLE forwards (
            message_id INTEGER PRIMARY KEY,
            host TEXT NOT NULL,
            forwarded_at REAL
        )""",
        "CREATE INDEX forwards_pending ON forwards(message_id) WHERE forwarded_at IS NULL",
        """CREATE TABLE remote_agents (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            entry TEXT NOT NULL
        )""",
        """CREATE TABLE remote_hosts (
            host TEXT PRIMARY KEY,
            entry TEXT NOT NULL,
            seen_at REAL NOT NULL
        )""",
    ],
    # 9: fewer index entries per message. No index by delivery time: every ack kept it up to
    # date for the hourly vacuum alone, which now deletes in id order (message_vacuum.py).
    # Of the messages by recipient, only the operator's are read back whole (its inbox), so
    # only those are indexed: a send to an agent goes into its undelivered index alone.
    [
        "DROP INDEX messages_delivered_at",
        "DROP INDEX messages_by_recipient",
        "CREATE INDEX messages_to_operator ON messages(id) WHERE recipient = 'operator'",
    ],
]
