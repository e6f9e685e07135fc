"""The run's picture: the SVG timeline and the terminal text timeline, from a timings document."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from kubernaut_e2e import timeline
from kubernaut_e2e.scheduler import DONE, FAILED, SKIPPED, StepRecord
from kubernaut_e2e.timings import timings_document

SVG = "{http://www.w3.org/2000/svg}"


def _document() -> dict:
    # Built the way up builds it: StepRecords -> timings_document (the data of timings.json).
    records = {
        "preflight": StepRecord("preflight", (), DONE, 5.0, 5.5),
        "cluster": StepRecord("cluster", ("preflight",), DONE, 5.5, 13.0, note="created"),
        "build-gateway": StepRecord("build-gateway", ("preflight",), DONE, 5.5, 5.6,
                                    note="reused: inputs unchanged"),
        "load-gateway": StepRecord("load-gateway", ("build-gateway", "cluster"), FAILED, 13.0, 15.0,
                                   error="`kind load image-archive` exited with code 1 <x & y>\x1b[31m\n"
                                         "  diagnosis: corrupt store"),
        "gateway": StepRecord("gateway", ("load-gateway",), SKIPPED,
                              error="not started: step load-gateway failed"),
    }
    from pathlib import Path

    return timings_document(records, "2025-06-01T10:00:00+0000", Path("/runs/1"))


def _groups(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-step"): g for g in root.iter(f"{SVG}g") if g.get("data-step")}


def test_svg_is_well_formed_and_self_contained():
    text = timeline.svg(_document())
    root = ET.fromstring(text)  # well-formed, despite <, & and an ANSI escape in the error
    assert root.tag == f"{SVG}svg"
    assert "\x1b" not in text
    # No scripts, styles, fonts or images fetched from elsewhere.
    assert not [e for e in root.iter() if e.tag in (f"{SVG}script", f"{SVG}image", f"{SVG}style",
                                                    f"{SVG}foreignObject")]
    hrefs = [e.get("href") for e in root.iter(f"{SVG}a")]
    assert hrefs and all(h.endswith(".log") and "/" not in h for h in hrefs)  # logs beside it


def test_svg_has_one_bar_per_step_that_ran_placed_on_the_time_axis():
    groups = _groups(ET.fromstring(timeline.svg(_document(), axis_width=800)))
    assert list(groups) == ["preflight", "cluster", "build-gateway", "load-gateway", "gateway"]
    bars = {name: g.find(f"{SVG}rect") for name, g in groups.items()}
    assert bars["gateway"] is None  # skipped: never ran, no bar
    # 10 s of run (5.0 -> 15.0) over 800 px: cluster starts 0.5 s in and lasts 7.5 s.
    cluster = bars["cluster"]
    assert abs(float(cluster.get("x")) - (190 + 40)) < 1
    assert abs(float(cluster.get("width")) - 600) < 1
    assert float(bars["load-gateway"].get("x")) > float(cluster.get("x")) + float(cluster.get("width")) - 1


def test_svg_colours_by_status_marks_critical_path_reused_and_the_error():
    doc = _document()
    assert doc["critical_path"] == ["preflight", "cluster", "load-gateway"]
    groups = _groups(ET.fromstring(timeline.svg(doc)))
    classes = {name: set((g.get("class") or "").split()) for name, g in groups.items()}
    assert {n for n, c in classes.items() if "critical" in c} == {"preflight", "cluster", "load-gateway"}
    assert {n for n, c in classes.items() if "reused" in c} == {"build-gateway"}
    assert groups["build-gateway"].find(f"{SVG}rect").get("fill") == "url(#reused)"
    assert groups["cluster"].find(f"{SVG}rect").get("fill") == timeline.COLOURS["done"]
    failed = groups["load-gateway"]
    assert failed.find(f"{SVG}rect").get("fill") == timeline.COLOURS["failed"]
    # The error on hover (all of it) and beside the bar (its first line).
    hover = failed.find(f"{SVG}title").text or ""
    assert "exited with code 1 <x & y>" in hover and "diagnosis: corrupt store" in hover
    beside = [t.text for t in failed.iter(f"{SVG}text")]
    assert any(t and t.startswith("`kind load image-archive` exited") for t in beside)
    assert "not started: step load-gateway failed" in "".join(t.text or "" for t in groups["gateway"].iter())


def test_text_timeline_fits_the_width_and_marks_status():
    for width in (60, 100, 160):
        lines = timeline.text(_document(), width)
        assert len(lines) == 6  # five steps and the legend
        assert all(len(line) <= width for line in lines), (width, lines)
    lines = timeline.text(_document(), 100)
    by_name = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in lines[:-1]}
    assert by_name["cluster"].startswith("* ") and "█" in by_name["cluster"] and "✓" in by_name["cluster"]
    assert by_name["build-gateway"].startswith("  ") and "░" in by_name["build-gateway"]
    assert by_name["build-gateway"].endswith("reused")
    assert "▒" in by_name["load-gateway"] and "✗" in by_name["load-gateway"]
    assert "█" not in by_name["gateway"] and by_name["gateway"].rstrip().endswith("-")
    # Bars are placed in time: the cluster's bar starts left of the failed load's.
    assert by_name["cluster"].index("█") < by_name["load-gateway"].index("▒")


def test_text_timeline_in_ascii():
    lines = timeline.text(_document(), 90, unicode=False)
    assert all(ord(c) < 128 for line in lines for c in line)
    assert "FAIL" in next(line for line in lines if "load-gateway" in line)


def test_empty_run_has_no_picture_but_a_valid_svg():
    empty = {"steps": [], "critical_path": [], "makespan": 0.0, "sum_of_steps": 0.0}
    assert timeline.text(empty) == []
    ET.fromstring(timeline.svg(empty))
