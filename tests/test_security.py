"""Nothing is unpickled and no shell line is built: checked over the source of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "watchnext", "jobs", "ray_train", "serving", "report", "synthetic", "bench")
UNPICKLERS = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_unpickles_or_runs_a_shell(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names if n} & UNPICKLERS, f"{path}:{node.lineno} imports an unpickler"
    for node, name in calls(tree):
        keywords = {k.arg: k.value for k in node.keywords}
        if name.endswith("torch.load") or name == "load" and "weights_only" in keywords:
            value = keywords.get("weights_only")
            assert isinstance(value, ast.Constant) and value.value is True, \
                f"{path}:{node.lineno} torch.load without weights_only=True"
        assert name not in ("os.system", "os.popen", "eval", "exec"), f"{path}:{node.lineno} calls {name}"
        shell = keywords.get("shell")
        assert not (isinstance(shell, ast.Constant) and shell.value), f"{path}:{node.lineno} runs a shell"
        if name.startswith("subprocess."):
            assert node.args and not isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)), \
                f"{path}:{node.lineno} passes a command line string to {name}; pass a list"


def test_the_check_sees_torch_load_calls():
    found = [(p, n) for p in modules() for n, name in calls(ast.parse(p.read_text())) if name.endswith("torch.load")]
    assert len(found) >= 5  # export, loop, warm start, trainer: the check above is not vacuous
