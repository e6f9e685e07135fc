"""DataStorage SQL migrations: goose files from the source tree, applied by a Job in the cluster.

Goose files hold an Up and a Down section; only Up is applied, in numeric order. Applied
versions are recorded in a table of our own, so a re-run skips them instead of failing on
"already exists". The Job then prints the tables it sees, which are checked against the tables
the migrations create.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_NAME = "datastorage-migrations"
CONFIGMAP_NAME = "datastorage-migrations"
TABLES_MARKER = "TABLES: "

_VERSION = re.compile(r"^(\d+)")
_UP = re.compile(r"^\s*--\s*\+goose\s+Up\b.*$", re.MULTILINE | re.IGNORECASE)
_DOWN = re.compile(r"^\s*--\s*\+goose\s+Down\b.*$", re.MULTILINE | re.IGNORECASE)
_STATEMENT_MARK = re.compile(r"^\s*--\s*\+goose\s+(StatementBegin|StatementEnd|NO TRANSACTION)\b.*$\n?",
                             re.MULTILINE | re.IGNORECASE)
_CREATE_TABLE = re.compile(
    r"\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:\"?public\"?\.)?\"?([A-Za-z_][A-Za-z0-9_]*)\"?",
    re.IGNORECASE)
_PARTITION_OF = re.compile(r"\bPARTITION\s+OF\b", re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # file name, for logs
    up: str


def up_section(text: str) -> str:
    """The SQL between `-- +goose Up` and `-- +goose Down` (all before Down without an Up mark)."""
    up = _UP.search(text)
    start = up.end() if up else 0
    down = _DOWN.search(text, start)
    body = text[start:down.start() if down else len(text)]
    return _STATEMENT_MARK.sub("", body).strip() + "\n"


def load_migrations(files: Iterable[Path]) -> list[Migration]:
    """Parse migration files; numeric order (so 10_x sorts after 9_x), numberless files ignored."""
    migrations = []
    for path in files:
        match = _VERSION.match(path.name)
        if match:
            migrations.append(Migration(int(match.group(1)), path.name, up_section(path.read_text())))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise ValueError(f"two migration files share version {duplicates[0]}")
    return migrations


def created_tables(migrations: Iterable[Migration]) -> set[str]:
    """Tables the Up sections create (partitions excluded: they are not listed by name)."""
    tables: set[str] = set()
    for m in migrations:
        for statement in m.up.split(";"):
            match = _CREATE_TABLE.search(statement)
            if match and not _PARTITION_OF.search(statement):
                tables.add(match.group(1).lower())
    return tables


def parse_tables(log: str) -> set[str] | None:
    for line in reversed(log.splitlines()):
        if line.startswith(TABLES_MARKER):
            return {t.strip().lower() for t in line[len(TABLES_MARKER):].split(",") if t.strip()}
    return None


def configmap(migrations: Iterable[Migration], namespace: str) -> dict[str, Any]:
    # Keys are our own (zero-padded versions): file names from the tree never reach a shell.
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace, "labels": {"app": "datastorage"}},
        "data": {f"{m.version:08d}.sql": m.up for m in migrations},
    }


# Runs in the postgres image. Credentials come from the Secret via envFrom, never from argv.
_SCRIPT = r"""set -eu
export PGPASSWORD="$POSTGRES_PASSWORD"
run() { psql -h postgresql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -q "$@"; }
run -c "CREATE TABLE IF NOT EXISTS e2e_schema_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
for f in $(ls /migrations/*.sql | sort); do
  v=$(basename "$f" .sql)
  if [ -n "$(run -tAc "SELECT 1 FROM e2e_schema_migrations WHERE version = $v")" ]; then
    echo "skip $v (already applied)"
  else
    run --single-transaction -f "$f" -c "INSERT INTO e2e_schema_migrations (version) VALUES ($v)"
    echo "applied $v"
  fi
done
run -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO \"$APP_USER\"; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \"$APP_USER\""
echo "TABLES: $(run -tAc "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'e2e_schema_migrations'")"
"""


def job(namespace: str, postgres_image: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": JOB_NAME, "namespace": namespace, "labels": {"app": "datastorage-migrations"}},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app": "datastorage-migrations"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "migrate",
                        "image": postgres_image,
                        "command": ["/bin/sh", "-c", _SCRIPT],
                        "envFrom": [{"secretRef": {"name": "postgresql-credentials"}}],
                        "volumeMounts": [{"name": "migrations", "mountPath": "/migrations", "readOnly": True}],
                    }],
                    "volumes": [{"name": "migrations", "configMap": {"name": CONFIGMAP_NAME}}],
                },
            },
        },
    }
