from __future__ import annotations

from pathlib import Path

import pytest

from kubernaut_e2e.config import DEFAULTS, is_image_ref, load_config
from kubernaut_e2e.errors import EXIT_USAGE, UsageError


def test_defaults_need_no_file():
    cfg = load_config({})
    assert cfg.cluster_name == "gateway-e2e"
    # Images are per cluster: the tag is the cluster's name unless e2e.image_tag says otherwise.
    assert cfg.image_ref("gateway") == "localhost/kubernaut-gateway:gateway-e2e"
    assert cfg.image_ref("datastorage") == "localhost/kubernaut-datastorage:gateway-e2e"
    assert load_config({"cluster_name": "b"}).image_ref("gateway") == "localhost/kubernaut-gateway:b"
    assert load_config({"image_tag": "dev"}).image_ref("gateway") == "localhost/kubernaut-gateway:dev"
    assert cfg.kubeconfig.name == "kubeconfig" and cfg.kubeconfig.is_absolute()
    assert cfg.url("datastorage") == "https://127.0.0.1:18091"
    assert cfg.test_argv == ["go", "test", "./test/e2e/gateway/...", "-v", "-json", "-timeout", "30m"]


def test_host_ports_override_the_stack_and_are_checked():
    cfg = load_config({"host_ports": "gateway-api=18080, datastorage-api=28081"})
    assert cfg.host_port("gateway-api") == 18080 and cfg.url("gateway") == "http://127.0.0.1:18080"
    assert cfg.host_port("gateway-health") == 28080
    assert load_config({"host_ports": {"gateway-api": 18081}}).host_port("gateway-api") == 18081
    for bad, message in (("nope=1", "names no port of the stack"), ("gateway-api=x", "not a port number"),
                         ("gateway-api=70000", "not a TCP port"), ("gateway-api", "name=port pairs"),
                         ("gateway-api=28080", "same host port 28080")):
        with pytest.raises(UsageError, match=message):
            load_config({"host_ports": bad})


def test_flags_override_file_values_and_none_means_not_given(tmp_path: Path):
    cfg = load_config({"cluster_name": "from-file", "jobs": 3},
                      {"cluster_name": "from-flag", "jobs": None}, root=tmp_path)
    assert cfg.cluster_name == "from-flag"
    assert cfg.jobs == 3


def test_relative_paths_are_relative_to_the_project(tmp_path: Path):
    cfg = load_config({"source_dir": "src"}, root=tmp_path)
    assert cfg.source_dir == tmp_path / "src"


@pytest.mark.parametrize("raw, key", [
    ({"clustr_name": "x"}, "e2e.clustr_name: unknown key"),
    ({"jobs": "four"}, "e2e.jobs: expected an integer"),
    ({"jobs": 0}, "e2e.jobs: 0 must be at least 1"),
    ({"cluster_name": "Gateway_E2E"}, "e2e.cluster_name: 'Gateway_E2E' is not a valid DNS-1123"),
    ({"image_tag": "a b"}, "e2e.image_tag: 'a b' is not an image tag"),
    ({"provider": "lxc"}, "e2e.provider: 'lxc' must be one of"),
    ({"ready_timeout": -5}, "e2e.ready_timeout: -5 must be a positive"),
    ({"source_dir": 42}, "e2e.source_dir: expected a string"),
    ({"stack": "/no/such/stack.yaml"}, "stack /no/such/stack.yaml: cannot be read"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(UsageError) as info:
        load_config(raw)
    assert key in str(info.value)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ref, ok", [
    ("localhost/kubernaut-gateway:e2e-test", True),
    ("registry.access.redhat.com/ubi9/ubi-minimal", True),
    ("localhost:5000/a/b:1.0", True),
    ("redis", True),
    ("library/UPPER", False),
    ("a b", False),
    ("x:$(rm -rf /)", False),
    ("", False),
])
def test_image_ref_grammar(ref, ok):
    assert is_image_ref(ref) is ok


def test_every_default_is_a_field():
    cfg = load_config({})
    assert all(hasattr(cfg, key) for key in DEFAULTS)



def test_hosts_come_as_a_list_or_comma_separated_and_each_is_checked(tmp_path: Path):
    from kubernaut_e2e.config_sources import problem, resolve
    from kubernaut_e2e.hosts import HostSpec

    assert load_config({}).hosts == () and load_config({}).host == ""
    cfg = load_config({"host": "ci@build1:2222, build2"})
    assert cfg.hosts == (HostSpec("build1", "ci", 2222), HostSpec("build2"))
    assert cfg.host == "ci@build1:2222,build2"
    assert load_config({"host": ["ci@build1", "[::1]:22"]}).hosts == (HostSpec("build1", "ci"), HostSpec("::1", None, 22))
    assert load_config({"host": "ci@a"}, {"host": ["b"]}).hosts == (HostSpec("b"),)  # the flags win
    (tmp_path / "invoke.yaml").write_text("e2e:\n  host: [ci@a, 'ci@a']\n")
    assert problem(tmp_path, environ={}) == \
        f"config e2e.host (from {tmp_path}/invoke.yaml): 'ci@a' is given twice (each host runs one environment)"
    (tmp_path / "invoke.yaml").write_text("e2e:\n  host: {a: 1}\n")
    assert "must be [USER@]HOST[:PORT] entries" in (problem(tmp_path, environ={}) or "")
    (tmp_path / "invoke.yaml").unlink()
    assert problem(tmp_path, environ={"INVOKE_E2E_HOST": "ci@a:99999"}) == (
        "config e2e.host (from INVOKE_E2E_HOST): 'ci@a:99999': port '99999' is not a number from 1 to 65535 "
        "(expected [USER@]HOST[:PORT], e.g. ci@build1:2222)")
    with pytest.raises(UsageError, match=r"config e2e.host \(from --host\): '-oProxyCommand=x': "):
        resolve({}, {"host": ["-oProxyCommand=x"]}, project_dir=tmp_path, environ={})

# --- every source checked by the same code, errors naming the source ------------------------------


def test_each_source_is_named_in_its_error(tmp_path: Path):
    from kubernaut_e2e.config_sources import problem, resolve

    (tmp_path / "invoke.yaml").write_text("e2e:\n  jobs: 0\n")
    assert problem(tmp_path, environ={}) == f"config e2e.jobs (from {tmp_path}/invoke.yaml): 0 must be at least 1"
    (tmp_path / "invoke.yaml").write_text("e2e:\n  jobs: 2\n")
    assert problem(tmp_path, environ={"INVOKE_E2E_JOBS": "abc"}) == \
        "config e2e.jobs (from INVOKE_E2E_JOBS): expected an integer, got 'abc'"
    assert "config e2e.bogus (from INVOKE_E2E_BOGUS): unknown key" in problem(tmp_path, environ={"INVOKE_E2E_BOGUS": "1"})
    runtime = tmp_path / "ci.yaml"
    runtime.write_text("e2e:\n  provider: lxc\n")
    assert problem(tmp_path, ["invoke", "-f", str(runtime), "e2e.up"], environ={}) == \
        f"config e2e.provider (from {runtime}): 'lxc' must be one of auto, podman, docker"
    with pytest.raises(UsageError, match=r"config e2e.jobs \(from --jobs\): -1 must be at least 1"):
        resolve({}, {"jobs": -1}, project_dir=tmp_path, environ={})


def test_precedence_and_provenance(tmp_path: Path):
    from kubernaut_e2e.config_sources import collect, env_source, flag_source, provenance

    (tmp_path / "invoke.yaml").write_text("e2e:\n  jobs: 2\n  cluster_name: from-file\n")
    sources = [*collect(tmp_path, environ={"INVOKE_E2E_JOBS": "3"}), flag_source({"cluster_name": "from-flag"})]
    labels = provenance(sources)
    assert labels["jobs"] == "INVOKE_E2E_JOBS" and labels["cluster_name"] == "--cluster-name"
    assert env_source({"INVOKE_E2E_STATE_DIR": "/x", "OTHER": "1"}).values == {"state_dir": "/x"}


def test_yaml_aliases_and_huge_files_are_refused_unexpanded(tmp_path: Path):
    from kubernaut_e2e.config_sources import problem

    (tmp_path / "invoke.yaml").write_text("base: &b {jobs: 2}\ne2e: *b\n")
    assert problem(tmp_path, environ={}) == \
        f"{tmp_path}/invoke.yaml: line 2: YAML aliases (*b) are not accepted here: write the value out"
