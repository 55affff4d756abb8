"""`python -m service.backup create DEST | restore SRC`: one archive of a running host, and back.

The archive (.tar.gz): manifest.json; the database, by SQLite's online backup or pg_dump, each a
consistent snapshot while writers go on; then images/, snapshots/ (hard links to images/) and
runs/, copied after the database so all it names is there. Restore wants an empty data directory
and database, refuses members that leave their folder, then migrates.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import posixpath
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
import uuid
import zlib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import peewee
import psycopg2
from playhouse.db_url import connect as connect_url
from playhouse.db_url import parse as parse_url

from service.core.db import database, open_database
from service.migrate import apply_migrations, migration_names
from service.settings import Settings, SettingsError, ensure_data_dirs, load_settings
from service.storage import EXTRACT_FILTER, outside_problem

FORMAT = 1
FOLDERS = ("images", "snapshots", "runs")
MANIFEST = "manifest.json"
DATABASE_MEMBER = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresext", "postgresqlext")
LIBPQ_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "sslmode": "PGSSLMODE", "connect_timeout": "PGCONNECT_TIMEOUT"}
COUNTED = ("model", "experiment", "run", "image")
# The runs a restored service takes up (a never-started experiment's runs wait for its start)
UNFINISHED_RUNS = ("SELECT COUNT(*) FROM run JOIN experiment ON experiment.id = run.experiment_id "
                   "WHERE run.status IN ('queued', 'running') AND experiment.status = 'running'")


class BackupError(Exception):
    """Something the operator must fix: printed without a traceback, exit status 1."""


@dataclass
class Catalogue:
    """What a database holds: its migrations, row counts, and the files it names."""

    migrations: list[str]
    counts: dict[str, int]
    needed: list[str]  # paths under the data directory
    unfinished_runs: int  # queued or running runs of running experiments: taken up on restore


def read_catalogue(query: Callable[[str], list[tuple]]) -> Catalogue:
    needed = [f"images/{sha[:2]}/{sha}.{ext}"
              for sha, ext in query("SELECT sha256, extension FROM image")]
    needed += [f"snapshots/{key}" for (key,) in query("SELECT id FROM experiment")]
    needed += [f"runs/{key}" for (key,) in query("SELECT id FROM run WHERE status = 'succeeded'")]
    return Catalogue(
        migrations=sorted(version for (version,) in query("SELECT version FROM schema_migration")),
        counts={table: query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in COUNTED},
        needed=needed, unfinished_runs=query(UNFINISHED_RUNS)[0][0])


def database_kind(url: str) -> str:
    scheme = url.split(":", 1)[0]
    if scheme not in ("sqlite", *POSTGRES_SCHEMES):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {scheme!r} URLs")
    return "sqlite" if scheme == "sqlite" else "postgresql"


def run_pg_tool(name: str, args: list[str], url: str) -> None:
    """pg_dump or pg_restore: the database named in a conninfo string, the URL's other parts
    in libpq's environment variables (no shell, no password on a command line)."""
    command = shutil.which(name)
    if command is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client of the server's "
                          f"major version or newer (apt-get install postgresql-client-NN)")
    parts = parse_url(url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env |= {LIBPQ_ENV[key]: str(value) for key, value in parts.items() if key in LIBPQ_ENV}
    name_quoted = str(parts.get("database") or "").replace("\\", "\\\\").replace("'", "\\'")
    done = subprocess.run([command, "--no-password", f"--dbname=dbname='{name_quoted}'", *args],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise BackupError(f"{name} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def dump_sqlite(path: Path, target: Path) -> Catalogue:
    if not path.is_file():
        raise BackupError(f"no SQLite database at {path}")
    try:  # mode=ro: never create an empty database where there was none
        with (closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                                      timeout=30)) as source,
              closing(sqlite3.connect(target)) as copy):
            source.backup(copy)  # every page in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {path} fails SQLite's quick_check: {check}")
            return read_catalogue(lambda sql: copy.execute(sql).fetchall())
    except sqlite3.Error as error:
        raise BackupError(f"cannot back up {path}: {error}") from None


def dump_postgres(url: str, target: Path) -> Catalogue:
    """pg_dump in the snapshot of a transaction that reads the catalogue too: the manifest's
    counts and the files checked are exactly the dump's."""
    db = connect_url(url)
    try:
        connection = db.connection()
        connection.autocommit = True  # the transaction is the BEGIN below
        cursor = connection.cursor()
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        run_pg_tool("pg_dump", ["--format=custom", "--no-owner", "--no-privileges",
                                f"--snapshot={snapshot}", f"--file={target}"], url)
        return read_catalogue(lambda sql: cursor.execute(sql) or cursor.fetchall())
    except (psycopg2.Error, peewee.DatabaseError) as error:
        raise BackupError(f"PostgreSQL: {str(error).strip()}") from None
    finally:
        db.close()


class Padded:
    """A file read as exactly `size` bytes: zeros past an end that moved back while it was
    read (a log truncated by a new attempt), nothing past one that moved on."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle, self.left, self.short = handle, size, False

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(want)
        self.short = self.short or len(data) < want
        self.left -= want
        return data.ljust(want, b"\0")


class ArchiveWriter:
    """Adds folders to a tar, counting files, hard links and bytes per top folder."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.notes: list[str] = []
        self.counts = {folder: [0, 0, 0] for folder in FOLDERS}  # files, hard links, bytes

    def add_file(self, path: str, arcname: str) -> None:
        with open(path, "rb") as handle:
            info = self.tar.gettarinfo(arcname=arcname, fileobj=handle)  # a link if seen
            padded = Padded(handle, 0 if info.islnk() else info.size)
            self.tar.addfile(info, None if info.islnk() else padded)
        tally = self.counts[arcname.split("/")[0]]
        tally[1 if info.islnk() else 0] += 1
        tally[2] += 0 if info.islnk() else info.size
        if padded.short:
            self.notes.append(f"{arcname} shrank while copied")

    def add_entry(self, path: str, arcname: str) -> None:
        entries: list[os.DirEntry] = []
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                self.add_file(path, arcname)
            elif stat.S_ISDIR(mode):
                self.tar.addfile(self.tar.gettarinfo(path, arcname))
                entries = sorted(os.scandir(path), key=lambda entry: entry.name)
            else:  # a restore never follows a link: no way out of the data directory
                self.notes.append(f"left out {arcname}: a symbolic link or a special file")
        except FileNotFoundError:
            pass  # removed meanwhile (a model deleted)
        for entry in entries:  # a top folder's staging folders (.name) are not data yet
            if not (arcname in FOLDERS and entry.name.startswith(".")):
                self.add_entry(entry.path, f"{arcname}/{entry.name}")


def write_archive(path: Path, settings: Settings, dump: Path,
                  manifest: dict[str, Any]) -> tuple[ArchiveWriter, set[str]]:
    with tarfile.open(path, "w:gz", compresslevel=3) as tar:
        data = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))
        tar.add(dump, arcname=DATABASE_MEMBER[manifest["database"]])
        writer = ArchiveWriter(tar)
        for folder in FOLDERS:
            if (settings.data_dir / folder).is_dir():
                # realpath: a top folder may be a link to another disk
                writer.add_entry(os.path.realpath(settings.data_dir / folder), folder)
        names = {member.name for member in tar.getmembers()}
    with open(path, "rb") as written:
        os.fsync(written.fileno())
    return writer, names


def summary(kind: str, catalogue: Catalogue, missing: list[str]) -> list[str]:
    counts = catalogue.counts
    lines = [f"database ({kind}): {counts['model']} models, {counts['experiment']} experiments, "
             f"{counts['run']} runs, {counts['image']} images"]
    if catalogue.unfinished_runs:
        lines.append(f"note: {catalogue.unfinished_runs} runs of running experiments were "
                     f"queued or running: the restored service runs them (again, for those that "
                     f"had started: their folders may be partial)")
    if missing:
        lines.append(f"warning: {len(missing)} files the database names are missing (removed "
                     f"while the backup ran?): {', '.join(missing[:10])}")
    return lines


def create(settings: Settings, destination: Path) -> list[str]:
    """Write the backup archive to `destination` (under a temporary name, then renamed)."""
    kind = database_kind(settings.database_url)
    destination = destination.absolute().parent.resolve() / destination.name
    if destination.is_relative_to(settings.data_dir) or not destination.parent.is_dir():
        raise BackupError(f"{destination}: name a file in an existing folder, not in the data dir")
    started, token = time.monotonic(), uuid.uuid4().hex[:12]
    dump = destination.with_name(f".{destination.name}.{token}.db")
    partial = destination.with_name(f".{destination.name}.{token}.partial")
    try:
        catalogue = (dump_sqlite(Path(parse_url(settings.database_url)["database"]), dump)
                     if kind == "sqlite" else dump_postgres(settings.database_url, dump))
        manifest = {"format": FORMAT, "database": kind, "migrations": catalogue.migrations,
                    "counts": catalogue.counts, "unfinished_runs": catalogue.unfinished_runs,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "host": socket.gethostname(), "data_dir": str(settings.data_dir)}
        dump_size = dump.stat().st_size
        writer, names = write_archive(partial, settings, dump, manifest)
        os.replace(partial, destination)
    finally:
        dump.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    lines = summary(kind, catalogue, [path for path in catalogue.needed if path not in names])
    lines[1:1] = [f"{folder}/: {files} files, {links} hard links, {size:,} bytes"
                  for folder, (files, links, size) in writer.counts.items()]
    took = time.monotonic() - started
    return [*lines, *(f"note: {note}" for note in writer.notes[:20]),
            f"wrote {destination}: {destination.stat().st_size:,} bytes in {took:.1f} s "
            f"(the database: {dump_size:,} bytes)"]


def refuse_used_target(settings: Settings, kind: str) -> None:
    """Restore only onto an empty (or absent) data directory and an empty database."""
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise BackupError(f"{settings.data_dir} is not a folder")
    for folder, dirs, files in os.walk(settings.data_dir):
        found = files + [name for name in dirs if os.path.islink(os.path.join(folder, name))]
        if found:
            raise BackupError(f"{settings.data_dir} is not empty (it holds "
                              f"{Path(folder, found[0])}): restore onto an empty data directory")
    if kind == "sqlite":
        path = parse_url(settings.database_url)["database"]
        if any(os.path.exists(name) for name in (path, f"{path}-wal", f"{path}-shm")):
            raise BackupError(f"{path} exists: restore onto a host without a database")
        return
    db = connect_url(settings.database_url)
    try:
        tables = db.get_tables()
    except peewee.DatabaseError as error:
        raise BackupError(f"PostgreSQL: {str(error).strip()}") from None
    finally:
        db.close()
    if tables:
        raise BackupError(f"the database already holds tables ({', '.join(tables[:5])}): "
                          f"restore into an empty database")


def read_manifest(tar: tarfile.TarFile, kind: str) -> dict[str, Any]:
    try:
        member = tar.extractfile(MANIFEST)  # None for a member that is not a file
        manifest = None if member is None else json.load(member)
    except (KeyError, ValueError, tarfile.TarError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"not a sweeplab backup: no {MANIFEST} of format {FORMAT}")
    if manifest.get("database") != kind or DATABASE_MEMBER[kind] not in tar.getnames():
        raise BackupError(f"the backup holds a {manifest.get('database')} database and "
                          f"SWEEPLAB_DATABASE_URL names {kind}: restore onto the same kind")
    newer = sorted(set(manifest.get("migrations") or []) - set(migration_names()))
    if newer:
        raise BackupError(f"the backup comes from a newer sweeplab (migrations "
                          f"{', '.join(newer)}): update this code first")
    return manifest


def member_problem(member: tarfile.TarInfo, seen: dict[str, bytes]) -> str | None:
    name, parts = member.name, member.name.split("/")
    if outside_problem(name) or posixpath.normpath(name) != name:
        return "is not a plain relative path (absolute, or with '..')"
    if name in seen:
        return "appears twice"
    if name in (MANIFEST, *DATABASE_MEMBER.values()):
        return None if member.isreg() else "is not a regular file"
    if parts[0] not in FOLDERS or (len(parts) == 1 and not member.isdir()):
        return "is not part of a sweeplab backup"
    if member.islnk() and seen.get(member.linkname) not in tarfile.REGULAR_TYPES:
        return f"is a hard link to {member.linkname!r}, not to a file before it in the archive"
    if not (member.isreg() or member.isdir() or member.islnk()):
        return "is a symbolic link, a device or another special file"
    return None


def check_members(members: list[tarfile.TarInfo]) -> None:
    """Refuse the whole archive for its first bad member, before anything is written."""
    seen: dict[str, bytes] = {}
    for member in members:
        problem = member_problem(member, seen)
        if problem:
            raise BackupError(f"refusing this archive: {member.name!r} {problem}")
        seen[member.name] = member.type


def restore_database(settings: Settings, kind: str, dump: Path) -> tuple[list[str], Catalogue]:
    url = settings.database_url
    if kind == "sqlite":
        target = Path(parse_url(url)["database"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(dump, target)
    else:
        run_pg_tool("pg_restore", ["--clean", "--if-exists", "--no-owner", "--no-privileges",
                                   "--single-transaction", "--exit-on-error", str(dump)], url)
    open_database(url)
    try:
        database.connect(reuse_if_open=True)
        applied = apply_migrations()  # an older backup is brought up to date
        return applied, read_catalogue(lambda sql: database.execute_sql(sql).fetchall())
    finally:
        database.close()


def unpack(tar: tarfile.TarFile, settings: Settings, kind: str) -> tuple[list[str], Catalogue]:
    """Extract into a staging folder, restore the database, then move the folders in place."""
    staging = settings.data_dir / f".restore-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        tar.extractall(staging, **EXTRACT_FILTER)  # a second guard behind check_members
        applied, catalogue = restore_database(settings, kind, staging / DATABASE_MEMBER[kind])
        for folder in FOLDERS:
            shutil.rmtree(settings.data_dir / folder, ignore_errors=True)  # empty, or absent
            if (staging / folder).is_dir():
                os.rename(staging / folder, settings.data_dir / folder)
    except tarfile.TarError as error:
        raise BackupError(f"refusing this archive: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ensure_data_dirs(settings)
    return applied, catalogue


def restore(settings: Settings, source: Path) -> list[str]:
    """Unpack the backup at `source` onto an empty host; return what to print."""
    kind = database_kind(settings.database_url)
    refuse_used_target(settings, kind)
    try:
        tar = tarfile.open(source, "r:gz")
        members = tar.getmembers()  # reads it all: a damaged archive fails here
    except (OSError, EOFError, tarfile.TarError, zlib.error) as error:
        raise BackupError(f"cannot read {source}: {error}") from None
    with tar:
        check_members(members)
        manifest = read_manifest(tar, kind)
        applied, catalogue = unpack(tar, settings, kind)
    missing = [path for path in catalogue.needed if not (settings.data_dir / path).exists()]
    return [f"restored {source} (made {manifest.get('created_at')} on {manifest.get('host')}) "
            f"into {settings.data_dir}; migrations applied: {', '.join(applied) or 'none'}",
            *summary(kind, catalogue, missing)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("create", "restore"))
    parser.add_argument("path", type=Path, help="the archive to write (create) or read (restore)")
    args = parser.parse_args(argv)
    try:
        lines = {"create": create, "restore": restore}[args.command](load_settings(), args.path)
    except (BackupError, SettingsError, OSError) as error:
        print(f"backup {args.command}: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
