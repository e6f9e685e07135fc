"""The kubernaut-e2e command's choices: which checkout, which state folder, which paths root.
(tests/test_cli_install.py runs the installed command itself.)"""
from __future__ import annotations

from pathlib import Path

from kubernaut_e2e.cli import command_collection, find_checkout, go_module, state_home
from kubernaut_e2e.config import PATHS_ROOT_KEY, PROJECT_ROOT, load_config, paths_root
from tests.conftest import make_source_tree


def test_a_checkout_is_found_from_any_folder_inside_it(tmp_path: Path):
    src = make_source_tree(tmp_path)
    assert find_checkout(src) == src
    assert find_checkout(src / "cmd" / "gateway") == src
    assert find_checkout(tmp_path) is None


def test_a_checkout_is_known_by_its_module_or_by_its_layout(tmp_path: Path):
    by_module = tmp_path / "a"
    by_module.mkdir()
    (by_module / "go.mod").write_text('// header\nmodule "github.com/jordigilh/kubernaut" // upstream\n\ngo 1.24\n')
    assert go_module(by_module / "go.mod") == "github.com/jordigilh/kubernaut"
    assert find_checkout(by_module) == by_module
    fork = tmp_path / "b"
    (fork / "cmd" / "gateway").mkdir(parents=True)
    (fork / "config" / "crd").mkdir(parents=True)
    (fork / "go.mod").write_text("module example.com/fork\n")
    assert find_checkout(fork / "cmd") == fork
    other = tmp_path / "c"
    other.mkdir()
    (other / "go.mod").write_text("module github.com/jordigilh/kubernaut-docs\n")
    assert find_checkout(other) is None


def test_state_goes_to_the_users_state_folder(tmp_path: Path):
    assert state_home({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "kubernaut-e2e"
    home = Path("~").expanduser()
    assert state_home({}) == home / ".local" / "state" / "kubernaut-e2e"
    assert state_home({"XDG_STATE_HOME": "relative/ignored"}) == home / ".local" / "state" / "kubernaut-e2e"


def _cfg(cwd: Path, environ: dict[str, str], **raw: object):  # type: ignore[no-untyped-def]
    conf = command_collection(cwd, environ).configuration()
    return load_config({**conf["e2e"], **raw}, root=paths_root(conf))


def test_the_commands_defaults_and_relative_paths_follow_where_the_user_stands(tmp_path: Path):
    src = make_source_tree(tmp_path)
    inside = _cfg(src / "cmd", {"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert inside.source_dir == src
    assert inside.state_dir == tmp_path / "xdg" / "kubernaut-e2e"
    assert inside.dockerfile("gateway").is_file()  # the stack shipped in the package
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    given = _cfg(elsewhere, {}, source_dir="../kubernaut", state_dir="st")
    assert given.source_dir == src and given.state_dir == elsewhere / "st"
    assert _cfg(elsewhere, {}).source_dir == tmp_path / "kubernaut"  # the default, from where one stands


def test_invoke_in_this_checkout_keeps_its_paths_relative_to_the_project():
    assert paths_root({}) == PROJECT_ROOT
    assert paths_root({PATHS_ROOT_KEY: "/x"}) == Path("/x")
    cfg = load_config({"source_dir": "../kubernaut"})
    assert cfg.source_dir == (PROJECT_ROOT / "../kubernaut").resolve()
    assert cfg.state_dir == PROJECT_ROOT / ".e2e"
