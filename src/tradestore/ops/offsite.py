"""Offsite copies of the backups in an S3-compatible store (seed 004 §6.4's "cloud
storage", seed 002 §6.2), and recovery from there when the machine is lost.

Configuration: TRADESTORE_OFFSITE_URL=s3://bucket/prefix, TRADESTORE_OFFSITE_ENDPOINT for
stores other than AWS (MinIO, Ceph, Backblaze, ...). Credentials come from boto3's usual
sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment, a profile, an
instance role); tradestore never stores or logs them.

`push` copies the backup root's finished backups (full and partial dumps, base and
incremental backups, archived WAL) under the prefix with the same relative paths. It is
idempotent by name and checksum: an object of the same key, size and SHA-256 (kept in the
object's metadata) is not sent again, so the scheduler can run it every minute. A backup
folder is pushed only once its metadata.json exists (the backup finished), and
metadata.json goes last, so a folder with a remote metadata.json is complete.

`pull` downloads the store into a fresh directory with the same layout, checking each
object's SHA-256, and `pitr_from_store` recovers from it with the ordinary
`backup.pitr_restore`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tradestore.db.errors import TradestoreError
from tradestore.db.server import EmbeddedPostgres
from tradestore.extras import requires_extra
from tradestore.ops import backup

__all__ = ["OffsiteError", "PushReport", "Store", "pitr_from_store", "pull", "push"]

STATE_FILE = ".offsite-state.json"
_CHUNK = 1024 * 1024


class OffsiteError(TradestoreError, RuntimeError):
    """The offsite store is misconfigured, unreachable, or holds a damaged object."""


@dataclass(frozen=True)
class Store:
    bucket: str
    prefix: str = ""
    endpoint: str | None = None

    @classmethod
    def from_url(cls, url: str, endpoint: str | None = None) -> Store:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise OffsiteError(
                f"TRADESTORE_OFFSITE_URL: must look like s3://bucket/prefix (value: {url!r})"
            )
        prefix = parsed.path.strip("/")
        return cls(parsed.netloc, f"{prefix}/" if prefix else "", endpoint or None)

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def client(self) -> Any:
        with requires_extra("offsite", "offsite backups"):
            import boto3
        return boto3.client("s3", endpoint_url=self.endpoint)


@dataclass
class PushReport:
    uploaded: list[str] = field(default_factory=list)
    unchanged: int = 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder(folder: Path) -> list[Path]:
    """A finished backup folder's files, metadata.json last; none while it is unfinished."""
    if not (folder / "metadata.json").is_file():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "metadata.json")
    return [*files, folder / "metadata.json"]


def finished_files(root: Path) -> Iterator[Path]:
    """What push sends: finished backups and archived WAL segments (no scratch files)."""
    for kind in ("daily_full", "base"):
        parent = root / kind
        if parent.is_dir():
            for folder in sorted(parent.iterdir()):
                if folder.is_dir() and not folder.name.endswith(".part"):
                    yield from _folder(folder)
    partial = root / "partial"
    if partial.is_dir():
        for meta in sorted(partial.glob("*.json")):
            if meta.with_suffix(".dump").is_file():
                yield meta.with_suffix(".dump")
            yield meta
    archive = root / "wal_archive"
    if archive.is_dir():
        for segment in sorted(archive.iterdir()):
            # basic_archive writes "archtemp..." first and renames it when complete.
            if segment.is_file() and not segment.name.startswith(("archtemp", ".")):
                yield segment


def _remote_sizes(client: Any, store: Store) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=store.prefix
    ):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = int(item["Size"])
    return sizes


def push(root: Path, store: Store, client: Any | None = None) -> PushReport:
    """Copy every finished backup and WAL segment under root that the store lacks."""
    client = client or store.client()
    state_path = root / STATE_FILE
    try:
        state: dict[str, list[Any]] = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    remote = _remote_sizes(client, store)
    report = PushReport()
    for path in finished_files(root):
        rel = path.relative_to(root).as_posix()
        key = store.key(rel)
        st = path.stat()
        known = state.get(rel)
        same_file = known is not None and known[:2] == [st.st_size, st.st_mtime_ns]
        sha = known[2] if known is not None and same_file else _sha256(path)
        if remote.get(key) == st.st_size:
            if same_file:  # sent before with this checksum, and still there
                report.unchanged += 1
                continue
            head = client.head_object(Bucket=store.bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == sha:
                state[rel] = [st.st_size, st.st_mtime_ns, sha]
                report.unchanged += 1
                continue
        client.upload_file(
            str(path),
            store.bucket,
            key,
            ExtraArgs={"Metadata": {"sha256": sha, "mtime": str(st.st_mtime)}},
        )
        state[rel] = [st.st_size, st.st_mtime_ns, sha]
        report.uploaded.append(rel)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_path)
    return report


def pull(
    store: Store, dest: Path, *, only: tuple[str, ...] = (), client: Any | None = None
) -> list[Path]:
    """Download the store's backups into dest (same layout), checking every SHA-256.
    `only` limits it to some top-level folders (e.g. ("base", "wal_archive"))."""
    client = client or store.client()
    written: list[Path] = []
    for key in sorted(_remote_sizes(client, store)):
        rel = key[len(store.prefix) :]
        if only and rel.split("/", 1)[0] not in only:
            continue
        if rel.split("/", 1)[0] not in ("daily_full", "partial", "base", "wal_archive"):
            continue
        target = dest / rel
        if ".." in Path(rel).parts:
            raise OffsiteError(f"refusing object key {key!r}: it leaves the target directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        obj = client.get_object(Bucket=store.bucket, Key=key)
        meta = obj.get("Metadata", {})
        digest = hashlib.sha256()
        scratch = target.with_name(target.name + ".part")
        with scratch.open("wb") as fh:
            for chunk in obj["Body"].iter_chunks(_CHUNK):
                digest.update(chunk)
                fh.write(chunk)
        if meta.get("sha256") and meta["sha256"] != digest.hexdigest():
            scratch.unlink()
            raise OffsiteError(f"{key}: checksum differs from the one recorded at upload")
        scratch.replace(target)
        if meta.get("mtime"):  # WAL age decides what recovery can reach and what prune keeps
            mtime = float(meta["mtime"])
            os.utime(target, (mtime, mtime))
        written.append(target)
    return written


def pitr_from_store(
    store: Store,
    target_time: dt.datetime,
    new_home: Path,
    *,
    client: Any | None = None,
    timeout: float = 120,
) -> EmbeddedPostgres:
    """Point-in-time recovery from the store alone: pull its base backups and WAL into
    new_home/offsite, then recover into new_home as `backup.pitr_restore` does."""
    if target_time.tzinfo is None:
        raise OffsiteError("target_time: must carry a time zone (UTC recommended)")
    pulled = new_home / "offsite"
    if pulled.exists() and any(pulled.iterdir()):
        raise OffsiteError(f"{pulled} is not empty; recover into a new TRADESTORE_HOME")
    pull(store, pulled, only=("base", "wal_archive"), client=client)
    base = backup.base_for(pulled, target_time)
    if base is None:
        raise OffsiteError(f"no base backup in the store taken before {target_time.isoformat()}")
    return backup.pitr_restore(base, pulled / "wal_archive", target_time, new_home, timeout=timeout)
