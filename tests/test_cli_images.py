"""`invoke e2e.up --only images` and `invoke e2e.clean` as subprocesses: real podman builds,
saves and removes images; the stand-in kind creates the cluster and checks the archives."""
from __future__ import annotations

import json
import os

from tests.conftest import PRELOAD_IMAGES, Project
from tests.kindstate import clusters, set_behaviour


def _argvs(project: Project) -> list[list[str]]:
    return [call["argv"] for call in project.kind_calls()]


def test_up_images_builds_loads_and_overlaps_cluster_creation(project: Project):
    set_behaviour(project.kind_state, delay={"create cluster": 3.0})
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]

    result = project.run("e2e.up", "--only", "images")
    assert result.returncode == 0, result.stdout + result.stderr

    # kind saw exactly the commands of the plan, with the podman provider.
    argvs = _argvs(project)
    assert ["get", "clusters"] in argvs
    create = next(a for a in argvs if a[:2] == ["create", "cluster"])
    assert create[create.index("--name") + 1] == cluster
    assert create[create.index("--kubeconfig") + 1] == str(project.state / "state" / cluster / "kubeconfig")
    loads = [a for a in argvs if a[:2] == ["load", "image-archive"]]
    assert len(loads) == 4  # our two images and the stack's two third-party images
    assert all(call["provider"] == "podman" for call in project.kind_calls() if call["argv"] != ["version"])

    # The images that were built (and the preloaded ones) are the images kind loaded.
    assert sorted(clusters(project.kind_state)[cluster]["images"]) == sorted([*project.images.values(),
                                                                               *PRELOAD_IMAGES])
    for ref in project.images.values():
        assert project.image_exists(ref)
        arch = project.podman("image", "inspect", "--format", "{{index .Labels \"e2e.target-arch\"}}", ref)
        assert arch.stdout.strip() in ("amd64", "arm64")  # TARGETARCH from the provider, not hard-coded

    # No archive left behind; kubeconfig private.
    state = project.state / "state" / cluster
    assert not list(state.glob("archives/*.tar"))
    assert oct((state / "kubeconfig").stat().st_mode & 0o777) == "0o600"
    assert oct(state.stat().st_mode & 0o777) == "0o700"

    # Measured: a build ran while the cluster was being created.
    doc = project.timings()
    steps = {s["name"]: s for s in doc["steps"]}
    assert all(s["status"] == "done" for s in steps.values())
    c, b = steps["cluster"], steps["build-gateway"]
    assert b["start"] < c["end"] and c["start"] < b["end"], (c, b)
    assert doc["makespan"] < doc["sum_of_steps"]
    assert doc["critical_path"][0] == "preflight"
    assert doc["critical_path"][-1] in ("load-gateway", "load-datastorage", "preload-postgres", "preload-redis")
    # Each step has its own log, holding its command.
    assert "podman build" in (project.last_run_dir() / "build-gateway.log").read_text()
    assert "critical path:" in result.stdout and "makespan" in result.stdout

    # The run's picture: an SVG beside timings.json, a text timeline and the history line.
    import xml.etree.ElementTree as ET

    picture = project.last_run_dir() / "timeline.svg"
    drawn = [g.get("data-step") for g in ET.parse(picture).getroot().iter("{http://www.w3.org/2000/svg}g")
             if g.get("data-step")]
    assert drawn == [s["name"] for s in doc["steps"]]
    assert f"timeline: {picture}" in result.stdout
    assert "Timeline (seconds from the first start)" in result.stdout
    assert doc["history"]["kind"] == "cold" and "history: cold run in" in result.stdout


def test_second_up_reuses_the_cluster(project: Project):
    assert project.run("e2e.up", "--only", "cluster").returncode == 0
    second = project.run("e2e.up", "--only", "cluster")
    assert second.returncode == 0, second.stdout + second.stderr
    creates = [a for a in _argvs(project) if a[:2] == ["create", "cluster"]]
    assert len(creates) == 1
    assert "reused existing cluster" in second.stdout
    # Filed as a warm run, not compared with the cold one that created the cluster.
    assert "history: warm run in" in second.stdout and "first warm run" in second.stdout
    assert json.loads((project.state / "history.json").read_text())["runs"][0]["kind"] == "cold"


def test_clean_removes_cluster_images_and_state_and_is_idempotent(project: Project):
    assert project.run("e2e.up", "--only", "images").returncode == 0
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]

    first = project.run("e2e.clean")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"removed kind cluster {cluster}" in first.stdout
    assert cluster not in clusters(project.kind_state)
    assert ["delete", "cluster", "--name", cluster,
            "--kubeconfig", str(project.state / "state" / cluster / "kubeconfig")] in _argvs(project)
    for ref in project.images.values():
        assert not project.image_exists(ref)
    assert not (project.state / "state" / cluster).exists()

    second = project.run("e2e.clean")
    assert second.returncode == 0
    assert "nothing to remove" in second.stdout


def test_clean_removes_superseded_builds_of_ours_only(project: Project, tmp_path):
    assert project.run("e2e.up", "--only", "images").returncode == 0
    old_id = project.podman("image", "inspect", "--format", "{{.Id}}", project.images["gateway"]).stdout.strip()
    (project.source / "cmd" / "gateway" / "main.go").write_text("package main\n// changed\nfunc main() {}\n")
    assert project.run("e2e.up", "--only", "images").returncode == 0
    assert project.podman("image", "exists", old_id).returncode == 0  # dangling now
    # Someone else's dangling image must survive.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Dockerfile").write_text("FROM scratch\nLABEL owner=someone-else\nCOPY f /f\n")
    (tmp_path / "other" / "f").write_text(str(tmp_path))
    built = project.podman("build", "-q", str(tmp_path / "other"), check=True).stdout.strip().splitlines()[-1]
    try:
        result = project.run("e2e.clean")
        assert result.returncode == 0
        assert "superseded build" in result.stdout
        assert project.podman("image", "exists", old_id).returncode == 1
        assert project.podman("image", "exists", built).returncode == 0
    finally:
        project.podman("rmi", "--force", built)


def test_clean_keep_images(project: Project):
    assert project.run("e2e.up", "--only", "images").returncode == 0
    assert project.run("e2e.clean", "--keep-images").returncode == 0
    assert all(project.image_exists(ref) for ref in project.images.values())


def test_failed_load_stops_the_run_and_names_the_step(project: Project):
    # The cluster is slow and the gateway load fails at once: the datastorage branch is stopped.
    set_behaviour(project.kind_state, delay={"create cluster": 1.0},
                  fail={"load image-archive": {"exit": 1, "message": "ERROR: failed to load image: boom"}})
    result = project.run("e2e.up", "--only", "images", "--jobs", "4")
    assert result.returncode == 1
    doc = project.timings()
    steps = {s["name"]: s for s in doc["steps"]}
    failed = [s for s in steps.values() if s["status"] == "failed"]
    assert failed and failed[0]["name"].startswith("load-")
    assert f"FAILED {failed[0]['name']}" in result.stdout
    assert f"{failed[0]['name']}.log" in result.stdout
    assert "boom" in (project.last_run_dir() / f"{failed[0]['name']}.log").read_text()
    # The other load either failed too, was cancelled or never started: not "done".
    assert [s["status"] for s in steps.values()].count("done") < len(steps) - 1
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]
    assert not list((project.state / "state" / cluster).glob("archives/*.tar"))


def test_dry_run_echoes_commands_and_runs_none(project: Project):
    result = project.run("--dry", "e2e.up", "--only", "images")
    assert result.returncode == 0, result.stderr
    assert "podman build" in result.stdout and "kind load image-archive" in result.stdout
    assert project.kind_calls() == []
    assert not any(project.image_exists(ref) for ref in project.images.values())
    assert not (project.state / "runs").exists() or not any((project.state / "runs").iterdir())


def test_plan_json_lists_steps_needs_and_commands(project: Project):
    result = project.run("e2e.plan", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["load-gateway"]["needs"] == ["save-gateway", "cluster"]
    assert any(project.images["gateway"] in c for c in steps["build-gateway"]["commands"])
    assert any("kind create cluster" in c for c in steps["cluster"]["commands"])
    assert project.kind_calls() == []


def test_missing_tool_is_a_usage_error_before_anything_starts(project: Project, tmp_path):
    # A PATH with python but neither kind nor podman nor docker.
    bare = tmp_path / "bare"
    bare.mkdir()
    os.symlink(os.path.realpath(os.sys.executable), bare / "python3")
    result = project.run("e2e.up", extra_env={"PATH": str(bare)})
    assert result.returncode == 2
    assert "missing tools: kind" in result.stderr and "podman or docker" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project.state / "runs").exists()


def test_bad_config_is_a_usage_error_naming_the_key(project: Project):
    result = project.run("e2e.up", extra_env={"INVOKE_E2E_CLUSTER_NAME": "Not_Valid"})
    assert result.returncode == 2
    assert "e2e.cluster_name" in result.stderr
    assert project.kind_calls() == []


def test_missing_source_dir_says_which_path_and_how_to_set_it(project: Project, tmp_path):
    missing = tmp_path / "no-such-checkout"
    result = project.run("e2e.up", "--source-dir", str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr and "--source-dir" in result.stderr
    assert project.kind_calls() == []


def test_recreate_deletes_and_creates_and_home_kubeconfig_is_untouched(project: Project, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    assert project.run("e2e.up", "--only", "cluster", extra_env=env).returncode == 0
    again = project.run("e2e.up", "--only", "cluster", "--recreate", extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    argvs = _argvs(project)
    assert [a[:2] for a in argvs].count(["create", "cluster"]) == 2
    assert ["delete", "cluster"] in [a[:2] for a in argvs]
    assert not (home / ".kube").exists()
    assert not (project.kind_state / "home-kube-config").exists()  # kind was always given --kubeconfig


def test_a_half_made_cluster_is_recreated_with_one_line_saying_why(project: Project):
    # What an interrupted `kind create` leaves: listed by kind, but no kubeconfig to be had.
    from tests.kindstate import interrupted_create

    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]
    env = {**project.env, "KIND_EXPERIMENTAL_PROVIDER": "podman"}
    interrupted_create(project.kind_state, cluster, env)
    result = project.run("e2e.up", "--only", "cluster")
    assert result.returncode == 0, result.stdout + result.stderr
    why = (f"cluster {cluster!r} is listed by kind but unusable (kind cannot read its kubeconfig: "
           "a `kind create` that was interrupted leaves this): deleting it and creating it again")
    assert why in result.stdout
    argvs = [a[:2] for a in _argvs(project)]
    assert argvs.index(["delete", "cluster"]) < len(argvs) - 1 - argvs[::-1].index(["create", "cluster"])
    note = {s["name"]: s["note"] for s in project.timings()["steps"]}["cluster"]
    assert note.startswith("recreated: ")
    assert clusters(project.kind_state)[cluster].get("usable") is True


def test_stopped_node_containers_are_started_not_silently_reused(project: Project, preload_images):
    # After a host or podman machine restart kind still lists the cluster; its nodes are stopped.
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]
    assert project.run("e2e.up", "--only", "cluster").returncode == 0
    node = f"{cluster}-control-plane"
    project.podman("create", "--name", node, "--label", f"io.x-k8s.kind.cluster={cluster}", preload_images[0],
                   check=True)
    try:
        again = project.run("e2e.up", "--only", "cluster")
        assert again.returncode == 0, again.stdout + again.stderr
        assert (f"cluster {cluster!r}: node container(s) {node} is not running (host or podman machine "
                "restarted?): starting") in again.stdout
        assert f"$ podman start {node}" in (project.last_run_dir() / "cluster.log").read_text()
        started = project.podman("inspect", "--format", "{{.State.StartedAt}}", node).stdout.strip()
        assert started and not started.startswith("0001-01-01")  # it really was started
        note = {s["name"]: s["note"] for s in project.timings()["steps"]}["cluster"]
        assert note == f"reused existing cluster (started its stopped nodes: {node})"
    finally:
        project.podman("rm", "--force", node)
