"""Invoke's entry point in this checkout: `invoke --list`, `invoke e2e.up`, `invoke e2e.clean`, ...

The code is the `kubernaut_e2e` package next to this file (also installable with pip, which
gives the `kubernaut-e2e` command). This file only hands Invoke the package's collection.
"""
from pathlib import Path

from invoke import Collection

from kubernaut_e2e.e2e import collection
from kubernaut_e2e.project_config import exit_on_problem

exit_on_problem(Path(__file__).resolve().parent)

ns = Collection()
ns.add_collection(collection())
ns.configure(collection().configuration())
