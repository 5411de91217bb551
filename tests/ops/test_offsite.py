"""Offsite backups in an S3-compatible store: a local moto server on 127.0.0.1 started by
the tests (nothing reaches the internet). Push, lose the machine's backups, recover."""

from __future__ import annotations

import hashlib
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.schema import ALL_AVAILABLE_MODULES
from tests.support.wal import wait_archived
from tradestore.config import load_settings
from tradestore.db import migrate
from tradestore.db.server import EmbeddedPostgres
from tradestore.extras import MissingExtra
from tradestore.ops import backup, offsite
from tradestore.ops.scheduler import default_jobs

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local S3-compatible server with an empty bucket `offsite`; yields its endpoint."""
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="offsite")
        yield endpoint
    finally:
        server.stop()


def test_push_lose_everything_and_recover_from_the_store(s3: str, tmp_path: Path) -> None:
    settings = load_settings(
        None,
        TRADESTORE_HOME=tmp_path / "home",
        TRADESTORE_OFFSITE_URL="s3://offsite/site-a",
        TRADESTORE_OFFSITE_ENDPOINT=s3,
    )
    root = settings.backup_root
    server = EmbeddedPostgres(settings.TRADESTORE_HOME, wal_archive=root / "wal_archive")
    conninfo = server.start()
    recovered = None
    try:
        migrate.upgrade(conninfo)
        migrate.enable_modules(conninfo, ALL_AVAILABLE_MODULES)
        base = backup.base_backup(conninfo, root)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('one', 'One')")
        backup.base_backup(conninfo, root, incremental_from=base.path)
        full = backup.full_backup(conninfo, root)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('two', 'Two')")
            time.sleep(1.1)
            target = conn.execute("SELECT now()").fetchone()[0]
            time.sleep(1.1)
            conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('late', 'Late')")
        wait_archived(conninfo)

        job = {j.name: j for j in default_jobs(settings, embedded=True)}["offsite_push"]
        first = job.run(conninfo, settings)
        assert first["uploaded"] > 0  # type: ignore[index]
        assert job.run(conninfo, settings) == {"uploaded": 0, "unchanged": first["uploaded"]}  # type: ignore[index]
    finally:
        server.stop()
    shutil.rmtree(root)  # the machine's backups and WAL archive are gone

    store = offsite.Store.from_url("s3://offsite/site-a", s3)
    try:
        recovered = offsite.pitr_from_store(store, target, tmp_path / "recovered")
        with psycopg.connect(recovered.conninfo(), autocommit=True) as conn:
            codes = {r[0] for r in conn.execute("SELECT code FROM market.exchanges")}
            assert codes == {"one", "two"}  # the incremental's row, WAL replayed to target
            conn.execute("CREATE DATABASE from_dump")
        # The daily full dump comes back too, and restores with its checks.
        pulled = offsite.pull(store, tmp_path / "pulled", only=("daily_full",))
        dump = tmp_path / "pulled" / full.path.relative_to(root)
        assert dump in pulled
        counts = backup.restore(dump, recovered.conninfo("from_dump"))
        assert counts == full.counts
    finally:
        if recovered is not None:
            recovered.stop()


def _fake_root(root: Path) -> None:
    (root / "base" / "20250101T000000.part").mkdir(parents=True)
    (root / "base" / "20250101T000000.part" / "base.tar.gz").write_bytes(b"half")
    (root / "base" / "20250102T000000").mkdir(parents=True)
    (root / "base" / "20250102T000000" / "base.tar.gz").write_bytes(b"still writing")
    (root / "wal_archive").mkdir()
    (root / "wal_archive" / "archtemp.000000010000000000000002.1.2").write_bytes(b"temp")
    (root / "wal_archive" / "000000010000000000000001").write_bytes(b"segment-1")


def _keys(endpoint: str) -> dict[str, dict[str, Any]]:
    client = boto3.client("s3", endpoint_url=endpoint)
    found = {}
    for item in client.list_objects_v2(Bucket="offsite").get("Contents", []):
        head = client.head_object(Bucket="offsite", Key=item["Key"])
        found[item["Key"]] = head["Metadata"]
    return found


def test_push_sends_finished_files_once_by_name_and_checksum(s3: str, tmp_path: Path) -> None:
    root = tmp_path / "backups"
    _fake_root(root)
    store = offsite.Store.from_url("s3://offsite/p/", s3)
    report = offsite.push(root, store)
    assert report.uploaded == ["wal_archive/000000010000000000000001"]  # nothing unfinished
    metadata = _keys(s3)["p/wal_archive/000000010000000000000001"]
    assert metadata["sha256"] == hashlib.sha256(b"segment-1").hexdigest()

    (root / "base" / "20250102T000000" / "metadata.json").write_text("{}")  # finished now
    report = offsite.push(root, store)
    assert report.uploaded == ["base/20250102T000000/base.tar.gz",
                               "base/20250102T000000/metadata.json"]  # fmt: skip
    assert report.unchanged == 1

    # Same name and size, other bytes: sent again. Without the local record too.
    (root / "wal_archive" / "000000010000000000000001").write_bytes(b"segment-X")
    (root / offsite.STATE_FILE).unlink()
    report = offsite.push(root, store)
    assert report.uploaded == ["wal_archive/000000010000000000000001"] and report.unchanged == 2
    assert offsite.push(root, store).uploaded == []


def test_a_damaged_object_is_refused_on_pull(s3: str, tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=s3)
    client.put_object(Bucket="offsite", Key="wal_archive/000000010000000000000001",
                      Body=b"tampered", Metadata={"sha256": hashlib.sha256(b"orig").hexdigest()})  # fmt: skip
    with pytest.raises(offsite.OffsiteError, match="checksum differs"):
        offsite.pull(offsite.Store.from_url("s3://offsite", s3), tmp_path / "pulled")
    assert not (tmp_path / "pulled" / "wal_archive" / "000000010000000000000001").exists()


def test_configuration_errors_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(offsite.OffsiteError, match=r"TRADESTORE_OFFSITE_URL: must look like s3://"):
        offsite.Store.from_url("https://bucket/prefix")
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if the extra were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'tradestore\[offsite\]'"):
        offsite.Store.from_url("s3://bucket").client()
