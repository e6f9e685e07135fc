from __future__ import annotations

from pathlib import Path

import pytest

from kubernaut_e2e import migrations as mig

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
    assert "+goose" not in loaded[0].up
    assert "CREATE INDEX idx_audit" in loaded[0].up


def test_created_tables_skip_partitions(tree: Path):
    loaded = mig.load_migrations(sorted(tree.glob("*.sql")))
    assert mig.created_tables(loaded) == {"audit_events", "resource_action_traces", "action_histories"}


def test_file_without_up_mark_uses_everything_before_down():
    assert mig.up_section("CREATE TABLE a (x int);\n-- +goose Down\nDROP TABLE a;\n").strip() == \
        "CREATE TABLE a (x int);"


def test_duplicate_versions_are_rejected(tmp_path: Path):
    (tmp_path / "1_a.sql").write_text("x")
    (tmp_path / "001_b.sql").write_text("y")
    with pytest.raises(ValueError, match="share version 1"):
        mig.load_migrations(sorted(tmp_path.glob("*.sql")))


def test_parse_tables_from_job_log():
    log = "applied 00000001\nskip 00000002 (already applied)\nTABLES: a,B, c\n"
    assert mig.parse_tables(log) == {"a", "b", "c"}
    assert mig.parse_tables("no marker") is None


def test_configmap_keys_are_zero_padded_versions(tree: Path):
    cm = mig.configmap(mig.load_migrations(sorted(tree.glob("*.sql"))), "ns")
    assert list(cm["data"]) == ["00000001.sql", "00000002.sql", "00000010.sql"]
