"""kubernaut_e2e.migrations: goose files parsed like goose, the final schema computed in order, and
the Job's script run for real against PostgreSQL, keeping goose's own bookkeeping."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kubernaut_e2e import migrations as mig
from tests.conftest import KUBERNAUT_FIXTURE
from tests.postgres import Postgres, postgres  # noqa: F401 (fixture)

GOOSE_1 = """-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS audit_events (
    id bigserial PRIMARY KEY,
    payload jsonb NOT NULL
);
-- +goose StatementEnd
CREATE INDEX idx_audit ON audit_events (id);

-- +goose Down
DROP TABLE audit_events;
"""
GOOSE_2 = """-- +goose Up
CREATE TABLE resource_action_traces (id bigserial PRIMARY KEY);
CREATE TABLE audit_events_2026 PARTITION OF audit_events FOR VALUES FROM (1) TO (2);
-- +goose Down
DROP TABLE resource_action_traces;
"""
GOOSE_10 = """-- +goose Up
CREATE TABLE "public"."action_histories" (id int);
-- +goose Down
DROP TABLE action_histories;
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "010_histories.sql").write_text(GOOSE_10)
    (d / "001_audit.sql").write_text(GOOSE_1)
    (d / "002_traces.sql").write_text(GOOSE_2)
    (d / "README.md").write_text("not a migration")
    return d


def test_up_only_numeric_order(tree: Path):
    loaded = mig.load_migrations(sorted(tree.glob("*.sql")))
    assert [m.version for m in loaded] == [1, 2, 10]  # 10 after 2, not between 1 and 2
    assert "DROP TABLE" not in "".join(m.up for m in loaded)
    assert "CREATE INDEX idx_audit" in loaded[0].up


def test_final_tables_skip_partitions(tree: Path):
    loaded = mig.load_migrations(sorted(tree.glob("*.sql")))
    assert mig.final_tables(loaded) == {"audit_events", "resource_action_traces", "action_histories"}


def test_final_tables_follow_later_drops_and_renames():
    loaded = mig.load_migrations(sorted((KUBERNAUT_FIXTURE / "migrations").glob("*.sql")))
    # 003 drops resource_action_traces, 004 renames action_type_taxonomy, 002 drops and re-creates
    # retention_operations; a DROP TABLE inside a function body is not a migration step.
    assert mig.final_tables(loaded) == {"audit_events", "retention_operations", "action_type_catalog",
                                        "notification_audit"}
    assert [m.transactional for m in loaded] == [True, True, True, True, False]


def test_statements_blank_out_comments_and_function_bodies():
    sql = "CREATE TABLE a (x int); -- DROP TABLE a;\nCREATE FUNCTION f() AS $body$ DROP TABLE a; $body$;"
    assert mig.statements(sql) == ["CREATE TABLE a (x int)", "CREATE FUNCTION f() AS $$"]


def test_file_without_up_mark_uses_everything_before_down():
    assert mig.up_section("CREATE TABLE a (x int);\n-- +goose Down\nDROP TABLE a;\n").strip() == \
        "CREATE TABLE a (x int);"


def test_duplicate_versions_are_rejected(tmp_path: Path):
    (tmp_path / "1_a.sql").write_text("x")
    (tmp_path / "001_b.sql").write_text("y")
    with pytest.raises(ValueError, match="share version 1"):
        mig.load_migrations(sorted(tmp_path.glob("*.sql")))


def test_parse_markers_from_job_log():
    log = "applied 00000001\nskip 00000002 (already applied)\nVERSION: 2\nTABLES: a,B, c\n"
    assert mig.parse_tables(log) == {"a", "b", "c"}
    assert mig.parse_marker(log, mig.VERSION_MARKER) == "2"
    assert mig.parse_tables("no marker") is None


def test_configmap_keys_are_zero_padded_versions_and_mark_no_transaction():
    cm = mig.configmap(mig.load_migrations(sorted((KUBERNAUT_FIXTURE / "migrations").glob("*.sql"))), "ns")
    assert list(cm["data"]) == ["00000001.sql", "00000002.sql", "00000003.sql", "00000004.sql",
                                "00000005.notx.sql"]


def test_inputs_hash_changes_with_content_only(tree: Path):
    loaded = mig.load_migrations(sorted(tree.glob("*.sql")))
    assert mig.inputs_hash(loaded) == mig.inputs_hash(mig.load_migrations(sorted(tree.glob("*.sql"))))
    (tree / "010_histories.sql").write_text(GOOSE_10.replace("id int", "id bigint"))
    assert mig.inputs_hash(loaded) != mig.inputs_hash(mig.load_migrations(sorted(tree.glob("*.sql"))))


# --- the Job's script, for real ------------------------------------------------------------------

def _run_script(pg: Postgres, folder: Path, wait: int = 5) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **pg.env(), "DB_WAIT_SECONDS": str(wait), "MIGRATIONS_DIR": str(folder)}
    return subprocess.run(["/bin/sh", "-c", mig.SCRIPT], env=env, capture_output=True, text=True, timeout=120)


def _write_configmap_files(folder: Path, migrations_dir: Path) -> None:
    folder.mkdir()
    for key, text in mig.configmap(mig.load_migrations(sorted(migrations_dir.glob("*.sql"))), "ns")["data"].items():
        (folder / key).write_text(text)


def test_job_script_applies_like_goose_and_a_rerun_applies_nothing(postgres: Postgres, tmp_path: Path):
    folder = tmp_path / "cm"
    _write_configmap_files(folder, KUBERNAUT_FIXTURE / "migrations")
    first = _run_script(postgres, folder)
    assert first.returncode == 0, first.stdout + first.stderr
    assert [line for line in first.stdout.splitlines() if line.startswith("applied")] == [
        f"applied {v:08d}" for v in range(1, 6)]
    expected = mig.final_tables(mig.load_migrations(sorted((KUBERNAUT_FIXTURE / "migrations").glob("*.sql"))))
    assert mig.parse_tables(first.stdout) == expected  # partitions are not listed
    assert mig.parse_marker(first.stdout, mig.VERSION_MARKER) == "5"
    # goose's own bookkeeping: version 0 first, then one applied row per version.
    rows = postgres.query("SELECT version_id, is_applied FROM goose_db_version ORDER BY id")
    assert rows.splitlines() == ["0|t", "1|t", "2|t", "3|t", "4|t", "5|t"]
    assert postgres.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_audit_events_cluster_id'") == "1"

    again = _run_script(postgres, folder)
    assert again.returncode == 0, again.stderr
    assert "applied" not in again.stdout.replace("already applied", "")
    assert postgres.query("SELECT count(*) FROM goose_db_version") == "6"


def test_a_failing_migration_is_rolled_back_and_not_recorded(postgres: Postgres, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "001_ok.sql").write_text("-- +goose Up\nCREATE TABLE ok_table (id int);\n")
    (src / "002_bad.sql").write_text("-- +goose Up\nCREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n")
    folder = tmp_path / "cm"
    _write_configmap_files(folder, src)
    result = _run_script(postgres, folder)
    assert result.returncode != 0
    assert "no_such_table" in result.stderr
    assert postgres.query("SELECT to_regclass('half_done') IS NULL") == "t"  # the whole file rolled back
    assert postgres.query("SELECT string_agg(version_id::text, ',' ORDER BY id) FROM goose_db_version") == "0,1"


def test_the_script_waits_for_the_server_then_gives_up_with_a_clear_line(postgres: Postgres, tmp_path: Path):
    from tests.conftest import free_ports

    folder = tmp_path / "cm"
    _write_configmap_files(folder, KUBERNAUT_FIXTURE / "migrations")
    nobody = Postgres(free_ports(1)[0], postgres.user, postgres.password, postgres.database)
    result = _run_script(nobody, folder, wait=2)
    assert result.returncode == 1
    assert f"accepted no TCP connection within 2s" in result.stdout


def test_goose_itself_sees_the_jobs_migrations_as_applied(postgres: Postgres, tmp_path: Path):
    """Upstream's own tooling (the goose CLI at the version upstream pins) agrees with the books
    the Job keeps: every version applied, nothing left for `goose up` to do."""
    from tests.postgres import goose_binary

    folder = tmp_path / "cm"
    _write_configmap_files(folder, KUBERNAUT_FIXTURE / "migrations")
    assert _run_script(postgres, folder).returncode == 0
    dsn = (f"host=127.0.0.1 port={postgres.port} user={postgres.user} password={postgres.password} "
           f"dbname={postgres.database} sslmode=disable")
    goose = [str(goose_binary()), "-dir", str(KUBERNAUT_FIXTURE / "migrations"), "postgres", dsn]
    status = subprocess.run([*goose, "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    lines = [line for line in status.stderr.splitlines() if ".sql" in line]
    assert len(lines) == 5 and not any("Pending" in line for line in lines), status.stderr
    assert subprocess.run([*goose, "version"], capture_output=True, text=True).stderr.strip().endswith("goose: version 5")
    up = subprocess.run([*goose, "up"], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0 and "no migrations to run" in up.stderr, up.stderr
