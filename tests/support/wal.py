"""Waiting for the WAL archiver, for the backup tests' point-in-time recoveries."""

from __future__ import annotations

import time

import psycopg


def wait_archived(conninfo: str, bound: float = 120) -> str:
    """Close the current WAL segment and wait until the archiver has archived it.

    The segment to wait for is named once, from what pg_switch_wal returns: a point just
    past its switch record, inside the segment it closed, or, when there was nothing to
    close (no WAL since the last switch, e.g. right after pg_basebackup), the start of the
    open segment, whose predecessor is the last closed one; one byte back names the right
    segment in both cases. Naming it from pg_current_wal_lsn() on each poll would chase
    the open segment as soon as anything (autovacuum, a checkpoint) writes WAL after the
    switch, and naming the start of the open segment would wait for it; the open segment
    is archived only at archive_timeout (15 minutes). `bound` is a limit for a loaded
    machine, not a timing."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        closed = conn.execute("SELECT pg_walfile_name(pg_switch_wal() - 1)").fetchone()[0]
        deadline = time.monotonic() + bound
        while True:
            archived, failed = conn.execute(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
            ).fetchone()
            if archived is not None and archived >= closed:
                return str(closed)
            assert time.monotonic() < deadline, (
                f"WAL segment {closed} was not archived (last archived {archived}, "
                f"last failed {failed})"
            )
            time.sleep(0.2)
