"""The layer's file: its schema and the SQL on one connection, and how messages are serialized.

Plain functions, each statement one short transaction; the threads that call them are in
``process``, and the module docstring of ``layer`` says how the pieces fit.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

SCHEMA_VERSION = 2
# Formatted with a fresh random epoch (hexadecimal) when a file is set up; see ``read_epoch``.
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS layer_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    inbox TEXT NOT NULL,
    expires REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS layer_message_inbox ON layer_message (inbox, id);
CREATE INDEX IF NOT EXISTS layer_message_channel ON layer_message (channel, expires);
CREATE INDEX IF NOT EXISTS layer_message_expires ON layer_message (expires);
CREATE TABLE IF NOT EXISTS layer_group (
    grp TEXT NOT NULL,
    channel TEXT NOT NULL,
    inbox TEXT NOT NULL,
    joined REAL NOT NULL,
    PRIMARY KEY (grp, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS layer_group_channel ON layer_group (channel);
CREATE INDEX IF NOT EXISTS layer_group_joined ON layer_group (joined);
CREATE TABLE IF NOT EXISTS layer_meta (epoch TEXT NOT NULL);
INSERT INTO layer_meta (epoch) SELECT '{epoch}' WHERE NOT EXISTS (SELECT 1 FROM layer_meta);
PRAGMA user_version = 2;
COMMIT;
"""


class Row(NamedTuple):
    """One claimed message, as stored."""

    id: int
    channel: str
    inbox: str
    expires: float
    body: bytes


def _set_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """WAL mode; SQLite answers "locked" at once (no busy handler) while another connection
    opening the same new file switches it too, so retry within the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open the layer's file (creating it and its tables if needed) in WAL mode."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        _set_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            try:
                conn.executescript(SCHEMA.format(epoch=secrets.token_hex(8)))
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    except BaseException:
        conn.close()
        raise
    return conn


FileIdentity = tuple[int, int]  # (device, inode)


def file_identity(path: str) -> FileIdentity | None:
    """Which file ``path`` names now (device and inode), or None when there is none: one stat, about 1 µs."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def open_file(path: str, busy_timeout: float) -> tuple[sqlite3.Connection, FileIdentity | None]:
    """Connect to the layer's file (creating it if missing), and say which file that is, to notice its loss.

    A lost file's ``-wal`` and ``-shm`` need no cleaning up: SQLite deletes a WAL it finds
    beside an empty database file instead of reading it, and never checkpoints into, nor
    deletes the WAL of, a file that was unlinked under an open connection.
    """
    conn = connect(path, busy_timeout)
    return conn, file_identity(path)


def read_epoch(conn: sqlite3.Connection) -> str:
    """The random token written when this file was set up: a new file (the old one lost) has another."""
    row = conn.execute("SELECT epoch FROM layer_meta LIMIT 1").fetchone()
    return row[0] if row else ""


def insert_message(
    conn: sqlite3.Connection, channel: str, inbox: str, body: bytes, capacity: int, now: float, expires: float
) -> bool:
    """Queue one message unless the channel already holds ``capacity`` live ones; False when full."""
    cursor = conn.execute(
        "INSERT INTO layer_message (channel, inbox, expires, body) SELECT ?1, ?2, ?3, ?4 "
        "WHERE (SELECT COUNT(*) FROM layer_message WHERE channel = ?1 AND expires > ?5) < ?6",
        (channel, inbox, expires, body, now, capacity),
    )
    return cursor.rowcount == 1


def insert_group_message(
    conn: sqlite3.Connection, group: str, body: bytes, now: float, expires: float, joined_after: float
) -> tuple[int, int, set[str]]:
    """Queue the message for every live member of the group that has room for it.

    Returns the number of members, of messages queued and the inboxes written to (whose
    processes to wake).
    """
    members = conn.execute(
        "SELECT COUNT(*) FROM layer_group WHERE grp = ? AND joined > ?", (group, joined_after)
    ).fetchone()[0]
    if not members:
        return 0, 0, set()
    rows = conn.execute(
        "INSERT INTO layer_message (channel, inbox, expires, body) "
        "SELECT g.channel, g.inbox, ?3, ?4 FROM layer_group AS g WHERE g.grp = ?1 AND g.joined > ?2 "
        "AND (SELECT COUNT(*) FROM layer_message AS m WHERE m.channel = g.channel AND m.expires > ?5) "
        "< layer_capacity(g.channel) RETURNING inbox",
        (group, joined_after, expires, body, now),
    ).fetchall()
    return members, len(rows), {row[0] for row in rows}


def add_member(conn: sqlite3.Connection, group: str, channel: str, inbox: str, now: float) -> None:
    conn.execute(
        "INSERT INTO layer_group (grp, channel, inbox, joined) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (grp, channel) DO UPDATE SET joined = excluded.joined",
        (group, channel, inbox, now),
    )


def remove_member(conn: sqlite3.Connection, group: str, channel: str) -> None:
    conn.execute("DELETE FROM layer_group WHERE grp = ? AND channel = ?", (group, channel))


def _inbox_filter(inboxes: list[str], exclude: list[str], now: float) -> tuple[str, list[Any]]:
    where = f"inbox IN ({','.join('?' * len(inboxes))}) AND expires > ?"
    params: list[Any] = [*inboxes, now]
    if exclude:
        where += f" AND channel NOT IN ({','.join('?' * len(exclude))})"
        params.extend(exclude)
    return where, params


def claim(conn: sqlite3.Connection, inboxes: list[str], exclude: list[str], limit: int, now: float) -> list[Row]:
    """Take (delete and return, oldest first) up to ``limit`` live messages addressed to these inboxes.

    A read-only look comes first: most polls find nothing, and a read takes no write lock.
    """
    where, params = _inbox_filter(inboxes, exclude, now)
    if conn.execute(f"SELECT 1 FROM layer_message WHERE {where} LIMIT 1", params).fetchone() is None:  # noqa: S608
        return []
    rows = conn.execute(
        f"DELETE FROM layer_message WHERE id IN (SELECT id FROM layer_message WHERE {where} "  # noqa: S608
        "ORDER BY id LIMIT ?) RETURNING id, channel, inbox, expires, body",
        [*params, limit],
    ).fetchall()
    return sorted(Row._make(row) for row in rows)


def restore(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Put claimed messages back under their original ids, so they keep their place in line."""
    conn.executemany(
        "INSERT OR IGNORE INTO layer_message (id, channel, inbox, expires, body) VALUES (?, ?, ?, ?, ?)", list(rows)
    )


def forget_channels(conn: sqlite3.Connection, channels: Iterable[str]) -> None:
    conn.executemany("DELETE FROM layer_group WHERE channel = ?", [(c,) for c in channels])


def cleanup(conn: sqlite3.Connection, now: float, joined_after: float) -> None:
    """Delete expired messages and memberships; a channel that let a message expire leaves its groups."""
    expired = conn.execute("DELETE FROM layer_message WHERE expires <= ? RETURNING channel", (now,)).fetchall()
    if expired:
        forget_channels(conn, {row[0] for row in expired})
    conn.execute("DELETE FROM layer_group WHERE joined <= ?", (joined_after,))


def delete_all(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM layer_message")
    conn.execute("DELETE FROM layer_group")


def data_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA data_version").fetchone()[0]


# --- Serialization ------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    """msgpack, as channels_redis uses: the types a Channels message may carry, bytes kept as bytes."""
    try:
        return msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"message cannot be serialized for the channel layer: {exc}") from exc


def decode(body: bytes) -> dict[str, Any]:
    return msgpack.unpackb(body, raw=False)
