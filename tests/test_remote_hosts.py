"""Host specs (pure) and the host preflight against a real sshd: each failure is one line, exit 2."""
from __future__ import annotations

import platform
import socket
import time
from pathlib import Path

import pytest

from kubernaut_e2e.errors import EXIT_USAGE, UsageError
from kubernaut_e2e.hosts import HostFacts, HostSpec, host_problems, parse_host, parse_probe, preflight_host
from kubernaut_e2e.podman import normalize_arch
from tests.sshd import SSHServer, free_port, keygen, sshd  # noqa: F401


@pytest.mark.parametrize("text, spec", [
    ("build1", HostSpec("build1")),
    ("ci@build1.example.com", HostSpec("build1.example.com", "ci")),
    ("root@127.0.0.1:2222", HostSpec("127.0.0.1", "root", 2222)),
    ("host-a:22", HostSpec("host-a", None, 22)),
    ("[::1]:2200", HostSpec("::1", None, 2200)),
    ("me.x@[fe80::1]", HostSpec("fe80::1", "me.x")),
    (" ci@b ", HostSpec("b", "ci")),
])
def test_host_specs_parse(text: str, spec: HostSpec):
    assert parse_host(text) == spec


@pytest.mark.parametrize("text, why", [
    ("", "is empty"),
    ("a b", "contains whitespace"),
    ("@host", "user '' is not a valid user name"),
    ("ro;ot@host", "user 'ro;ot' is not a valid user name"),
    ("host:0", "port '0' is not a number from 1 to 65535"),
    ("host:65536", "port '65536'"),
    ("host:ssh", "port 'ssh'"),
    ("host:", "port ''"),
    (":22", "has no host name"),
    ("-oProxyCommand=x", "is not a valid host name"),
    ("ho_st", "is not a valid host name"),
    ("::1", "must be written in brackets"),
    ("[::1", "without a closing ']'"),
    ("[nothost]:22", "is not an IPv6 address"),
])
def test_bad_host_specs_are_one_line_naming_the_input(text: str, why: str):
    with pytest.raises(UsageError) as info:
        parse_host(text, source="e2e.host")
    message = str(info.value)
    assert message.startswith(f"e2e.host {text!r}: ") and why in message
    assert "\n" not in message and info.value.exit_code == EXIT_USAGE


def test_label_and_slug_name_the_host():
    spec = parse_host("ci@[::1]:2222")
    assert spec.label == "ci@[::1]:2222"
    assert "/" not in spec.slug and ":" not in spec.slug and spec.slug
    assert parse_host("build1").label == "build1"


def test_probe_output_and_problems_are_judged_purely():
    facts = parse_probe("arch=aarch64\nos=Linux\nstate=/home/ci/.local/state\nfree_kb=1048576\n"
                        "tool.podman=/usr/bin/podman\ntool.kind=\n")
    assert facts == HostFacts(arch="arm64", tools={"podman": "/usr/bin/podman", "kind": ""}, free_bytes=2**30,
                              os="Linux", state_home="/home/ci/.local/state")
    assert facts.work_root == "/home/ci/.local/state/kubernaut-e2e"
    problems = host_problems("h", facts, folder="x/y", min_free_bytes=2 * 2**30)
    assert len(problems) == 2
    assert problems[0].startswith("host h: kind is not on the PATH")
    assert problems[1].startswith("host h: only 1.0 GiB free at x/y, need 2 GiB")
    # Only the required tools count (clean and diagnose need none of them to start).
    assert host_problems("h", facts, folder="x/y", min_free_bytes=1, required=("podman",)) == []
    assert host_problems("h", parse_probe("arch=x86_64\nstate=/s\nfree_kb=\n"), folder="f") == [
        "host h: could not measure free disk space at f"]
    # A relative state home (no $HOME) is no place to keep files.
    assert host_problems("h", parse_probe("arch=x86_64\nstate=.local/state\nfree_kb=9\n"), folder="f",
                         min_free_bytes=1) == [
        "host h: the remote user has no absolute $HOME (runs keep their files below it)"]


def test_preflight_of_a_good_host_returns_its_facts_and_an_open_connection(sshd: SSHServer, tmp_path: Path):
    connection, facts = preflight_host(sshd.spec, sshd.options(), folder=str(tmp_path / "not" / "yet"),
                                       min_free_bytes=1)
    try:
        assert connection.is_connected
        assert facts.arch == normalize_arch(platform.machine())
        assert facts.tools["podman"].endswith("/podman")
        assert facts.tools["kind"] == str(Path(__file__).resolve().parent / "bin" / "kind")  # the host's PATH
        assert facts.free_bytes and facts.free_bytes > 0
        assert facts.os == platform.system() and facts.state_home.startswith("/")
    finally:
        connection.close()


def _one_line(info: pytest.ExceptionInfo[UsageError]) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    assert info.value.exit_code == EXIT_USAGE
    return message


def test_nothing_listening_is_one_line(sshd: SSHServer, tmp_path: Path):
    spec = HostSpec("127.0.0.1", sshd.user, free_port())
    with pytest.raises(UsageError) as info:
        preflight_host(spec, sshd.options(), folder=str(tmp_path))
    assert f"host {spec.label}: cannot connect to 127.0.0.1:{spec.port}: connection refused" in _one_line(info)


def test_a_key_the_host_does_not_know_fails_at_once_without_a_prompt(sshd: SSHServer, tmp_path: Path):
    stranger = keygen(tmp_path / "stranger")
    started = time.monotonic()
    with pytest.raises(UsageError) as info:
        preflight_host(sshd.spec, sshd.options(identity=stranger), folder=str(tmp_path))
    assert time.monotonic() - started < 10
    message = _one_line(info)
    assert f"host {sshd.spec.label}: authentication failed for user {sshd.user!r}" in message
    assert "passwords are never tried" in message


def test_a_changed_host_key_is_refused(sshd: SSHServer, tmp_path: Path):
    other = keygen(tmp_path / "other_host")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    with pytest.raises(UsageError) as info:
        preflight_host(sshd.spec, sshd.options(known_hosts=known), folder=str(tmp_path))
    assert "its host key does not match" in _one_line(info)


def test_strict_host_keys_refuse_an_unknown_host(sshd: SSHServer, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(UsageError) as info:
        preflight_host(sshd.spec, sshd.options(known_hosts=empty, strict_host_keys=True), folder=str(tmp_path))
    assert "strict host key checking is on" in _one_line(info)


def test_a_port_that_never_speaks_ssh_is_bounded_by_the_connect_timeout(sshd: SSHServer, tmp_path: Path):
    with socket.socket() as silent:  # accepts TCP (the kernel does) but never sends a banner
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        spec = HostSpec("127.0.0.1", sshd.user, silent.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(UsageError) as info:
            preflight_host(spec, sshd.options(connect_timeout=2.0), folder=str(tmp_path))
        elapsed = time.monotonic() - started
    assert "no SSH answer" in _one_line(info) and elapsed < 8


def test_a_missing_tool_is_one_line_naming_it(sshd: SSHServer, tmp_path: Path):
    with pytest.raises(UsageError) as info:
        preflight_host(sshd.spec, sshd.options(), folder=str(tmp_path), min_free_bytes=1,
                       tools=("podman", "kind", "kubernaut-no-such-tool"))
    message = _one_line(info)
    assert message.startswith(f"host {sshd.spec.label}: kubernaut-no-such-tool is not on the PATH")
    assert "podman" not in message.split(":", 2)[2].split("is not")[0]


def test_several_problems_are_one_line_each(sshd: SSHServer, tmp_path: Path):
    with pytest.raises(UsageError) as info:
        preflight_host(sshd.spec, sshd.options(), folder=str(tmp_path), min_free_bytes=2**60,
                       tools=("podman", "no-such-a", "no-such-b"))
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"host {sshd.spec.label}: ") for line in lines)
    assert "no-such-a" in lines[0] and "no-such-b" in lines[1] and "GiB free" in lines[2]
