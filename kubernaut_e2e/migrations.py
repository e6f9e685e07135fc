"""DataStorage's goose migrations, applied the way goose would, by a Job inside the cluster.

Why a Job with psql (in the PostgreSQL image the environment already loads) instead of goose
over a port-forward: nothing to install on the host, no port-forward to keep alive, and the
database is reached the way DataStorage reaches it. The bookkeeping is goose's own: the table
`goose_db_version` (version 0 row first, one `is_applied` row per version), each migration's Up
section in its own transaction unless it says `-- +goose NO TRANSACTION`, so upstream's goose
tooling sees these migrations as applied and a re-run applies only new ones.

The check afterwards verifies the *final* schema: the tables the Up sections create, minus those a
later migration drops, renamed to what a later migration renames them to. Partitions are not
listed by name.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_NAME = "e2e-migrations"
CONFIGMAP_NAME = "e2e-migrations"
TABLES_MARKER = "TABLES: "
VERSION_MARKER = "VERSION: "
#: Annotations on the ConfigMap recording what was applied and verified, and on which volume.
APPLIED_ANNOTATION = "e2e.kubernaut.ai/applied-inputs"
VOLUME_ANNOTATION = "e2e.kubernaut.ai/database-volume"
TABLES_ANNOTATION = "e2e.kubernaut.ai/verified-tables"

_VERSION = re.compile(r"^(\d+)")
_UP = re.compile(r"^\s*--\s*\+goose\s+Up\b.*$", re.MULTILINE | re.IGNORECASE)
_DOWN = re.compile(r"^\s*--\s*\+goose\s+Down\b.*$", re.MULTILINE | re.IGNORECASE)
_NO_TRANSACTION = re.compile(r"^\s*--\s*\+goose\s+NO\s+TRANSACTION\b", re.MULTILINE | re.IGNORECASE)
_LINE_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_DOLLAR_QUOTED = re.compile(r"\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$", re.DOTALL)
_IDENT = r"(?:\"?[A-Za-z_][A-Za-z0-9_]*\"?\.)?\"?([A-Za-z_][A-Za-z0-9_]*)\"?"
_CREATE_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP(?:ORARY)?\s+|UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_IDENT}",
    re.IGNORECASE)
_PARTITION_OF = re.compile(r"\bPARTITION\s+OF\b", re.IGNORECASE)
_TEMPORARY = re.compile(r"^\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP", re.IGNORECASE)
_DROP_TABLE = re.compile(r"^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<names>[^;]*?)(?:\s+(?:CASCADE|RESTRICT))?\s*$",
                         re.IGNORECASE)
_RENAME_TABLE = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_IDENT}\s+RENAME\s+TO\s+\"?([A-Za-z_][A-Za-z0-9_]*)\"?\s*$",
    re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # file name, for logs
    up: str
    transactional: bool = True


def up_section(text: str) -> str:
    """The SQL between `-- +goose Up` and `-- +goose Down` (all before Down without an Up mark)."""
    up = _UP.search(text)
    start = up.end() if up else 0
    down = _DOWN.search(text, start)
    return text[start:down.start() if down else len(text)].strip() + "\n"


def load_migrations(files: Iterable[Path]) -> list[Migration]:
    """Parse migration files; numeric order (so 10_x sorts after 9_x), numberless files ignored."""
    migrations = []
    for path in files:
        match = _VERSION.match(path.name)
        if match:
            text = path.read_text()
            migrations.append(Migration(int(match.group(1)), path.name, up_section(text),
                                        transactional=not _NO_TRANSACTION.search(text)))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise ValueError(f"two migration files share version {duplicates[0]}")
    return migrations


def statements(sql: str) -> list[str]:
    """Top-level statements, with comments and dollar-quoted bodies (functions) blanked out."""
    sql = _DOLLAR_QUOTED.sub("$$", sql)
    sql = _BLOCK_COMMENT.sub(" ", sql)
    sql = _LINE_COMMENT.sub("", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


def final_tables(migrations: Iterable[Migration]) -> set[str]:
    """The tables that exist after every Up section ran, in order. Pure."""
    tables: set[str] = set()
    for migration in migrations:
        for statement in statements(migration.up):
            created = _CREATE_TABLE.match(statement)
            if created:
                if not _PARTITION_OF.search(statement) and not _TEMPORARY.match(statement):
                    tables.add(created.group(1).lower())
                continue
            dropped = _DROP_TABLE.match(statement)
            if dropped:
                for name in dropped["names"].split(","):
                    tables.discard(name.strip().split(".")[-1].strip('"').lower())
                continue
            renamed = _RENAME_TABLE.match(statement)
            if renamed and renamed.group(1).lower() in tables:
                tables.discard(renamed.group(1).lower())
                tables.add(renamed.group(2).lower())
    return tables


def parse_marker(log: str, marker: str) -> str | None:
    for line in reversed(log.splitlines()):
        if line.startswith(marker):
            return line[len(marker):].strip()
    return None


def parse_tables(log: str) -> set[str] | None:
    found = parse_marker(log, TABLES_MARKER)
    if found is None:
        return None
    return {t.strip().lower() for t in found.split(",") if t.strip()}


def inputs_hash(migrations: Iterable[Migration]) -> str:
    """What the migrations are: if this and the database volume are unchanged, nothing to do."""
    h = hashlib.sha256()
    for m in migrations:
        h.update(f"\0{m.version}\0{m.transactional}\0".encode() + m.up.encode())
    return h.hexdigest()[:32]


def _key(m: Migration) -> str:
    # Keys are our own (zero-padded versions): file names from the tree never reach a shell.
    return f"{m.version:08d}.sql" if m.transactional else f"{m.version:08d}.notx.sql"


def configmap(migrations: Iterable[Migration], namespace: str,
              annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": CONFIGMAP_NAME, "namespace": namespace,
                            "labels": {"app": "e2e-migrations"}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {_key(m): m.up for m in migrations}}


# Runs in the PostgreSQL image. Credentials come from the Secret as environment variables, never
# from argv; the host and port are the stack's (validated names and an integer).
SCRIPT = r"""set -eu
export PGPASSWORD="$DB_PASSWORD"
export PGCONNECT_TIMEOUT=5
db() { psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -v ON_ERROR_STOP=1 -q "$@"; }
waited=0
until pg_isready -q -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME"; do
  waited=$((waited + 1))
  if [ "$waited" -ge "$DB_WAIT_SECONDS" ]; then
    echo "PostgreSQL at $DB_HOST:$DB_PORT accepted no TCP connection within ${DB_WAIT_SECONDS}s"; exit 1
  fi
  sleep 1
done
db -c "CREATE TABLE IF NOT EXISTS goose_db_version (id integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NOT NULL DEFAULT now())"
db -c "INSERT INTO goose_db_version (version_id, is_applied) SELECT 0, true WHERE NOT EXISTS (SELECT 1 FROM goose_db_version)"
for f in $(ls "${MIGRATIONS_DIR:-/migrations}"/*.sql | sort); do
  name=$(basename "$f")
  v=${name%%.*}
  state=$(db -tAc "SELECT is_applied FROM goose_db_version WHERE version_id = $v ORDER BY id DESC LIMIT 1")
  if [ "$state" = "t" ]; then echo "skip $v (already applied)"; continue; fi
  case "$name" in
    *.notx.sql) db -f "$f"; db -c "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($v, true)" ;;
    *) db --single-transaction -f "$f" -c "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($v, true)" ;;
  esac
  echo "applied $v"
done
db -c "GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO \"$DB_USER\"; GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public TO \"$DB_USER\"; GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO \"$DB_USER\"" || echo "grants failed (tolerated, as upstream does)"
echo "VERSION: $(db -tAc "SELECT max(version_id) FROM goose_db_version WHERE is_applied")"
echo "TABLES: $(db -tAc "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'goose_db_version'")"
"""


def job(namespace: str, image: str, database: Mapping[str, Any], wait_seconds: int) -> dict[str, Any]:
    """The migrations Job for a stack's `database` settings (see the migrations component)."""
    def from_secret(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": database["secret"], "key": database[key]}}

    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": JOB_NAME, "namespace": namespace, "labels": {"app": "e2e-migrations"}},
        "spec": {
            # A retry covers a connection lost while PostgreSQL restarts; the script itself
            # waits for the server over TCP first.
            "backoffLimit": 2,
            "activeDeadlineSeconds": max(60, wait_seconds * 2),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {"app": "e2e-migrations"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "migrate",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", SCRIPT],
                        "env": [
                            {"name": "DB_HOST", "value": str(database["service"])},
                            {"name": "DB_PORT", "value": str(database["port"])},
                            {"name": "DB_WAIT_SECONDS", "value": str(wait_seconds)},
                            {"name": "DB_USER", "valueFrom": from_secret("user_key")},
                            {"name": "DB_PASSWORD", "valueFrom": from_secret("password_key")},
                            {"name": "DB_NAME", "valueFrom": from_secret("database_key")},
                        ],
                        "volumeMounts": [{"name": "migrations", "mountPath": "/migrations", "readOnly": True}],
                    }],
                    "volumes": [{"name": "migrations", "configMap": {"name": CONFIGMAP_NAME}}],
                },
            },
        },
    }
