"""Every process of the pipeline goes without numpy's transparent-huge-page advice (core/)."""

from __future__ import annotations

import os
import subprocess
import sys


def _advice_after(code: str, env: dict[str, str]) -> str:
    script = f"{code}\nfrom numpy._core.multiarray import _set_madvise_hugepage\nprint(_set_madvise_hugepage(False))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def test_the_advice_is_off_whether_numpy_came_first_or_not_and_the_children_inherit_it():
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    assert _advice_after("import numpy", env) == "True"  # numpy's own default here
    assert _advice_after("import core", env) == "False"
    assert _advice_after("import numpy, core", env) == "False"
    child = ("import core, subprocess, sys\n"
             "probe = 'from numpy._core.multiarray import _set_madvise_hugepage as s; print(s(False))'\n"
             "print(subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True).stdout.strip())")
    assert _advice_after(child, env).splitlines()[0] == "False"  # a worker process the pipeline starts
    # a user who asks for the advice keeps it
    assert _advice_after("import core", {**env, "NUMPY_MADVISE_HUGEPAGE": "1"}) == "True"
