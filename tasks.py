"""Invoke's entry point: `invoke --list`, `invoke e2e.up`, `invoke e2e.clean`, ...

The code lives in the `tasks/` folder. A module and a package cannot both be importable as
`tasks`, and Invoke's loader picks this file first, so this module makes itself the package:
setting `__path__` lets `tasks.graph`, `tasks.steps`, ... import as its submodules, in Invoke and
in pytest alike (there is deliberately no tasks/__init__.py).
"""
import os
from pathlib import Path

__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")]

from invoke import Collection  # noqa: E402

from tasks.e2e import collection  # noqa: E402
from tasks.project_config import exit_on_problem  # noqa: E402

exit_on_problem(Path(__file__).resolve().parent)

ns = Collection()
ns.add_collection(collection())
ns.configure(collection().configuration())
