"""The cluster files in infra/ agree with the code: every watchnext command they run parses and
its settings validate, the versions they name are the installed ones, the image installs the
pinned dependencies, and the scripts and the schedulers run the nightly steps in order.
No Spark, Ray, Airflow or cluster is needed: the tools the scripts call are stand-ins that
record their arguments."""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from watchnext.cli import build_parser
from watchnext.nightly import NIGHTLY_STEPS
from core.config import Config, load_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
DOCKERFILE = INFRA / "Dockerfile"
NIGHTLY_SH = INFRA / "nightly.sh"
DAG_FILE = INFRA / "airflow" / "watchnext_nightly.py"
# where the Dockerfile copies the repository
IMAGE_REPO = "local:///opt/watchnext/"

# each manifest under infra/k8s: its apiVersion, its kind, and the night's step it runs
MANIFESTS = {
    "spark-prep.yaml": ("sparkoperator.k8s.io/v1beta2", "SparkApplication", "prep"),
    "rayjob-train.yaml": ("ray.io/v1", "RayJob", "train"),
    "rayjob-recall.yaml": ("ray.io/v1", "RayJob", "recall"),
    "cronjob-nightly.yaml": ("batch/v1", "CronJob", "all"),
}
# the tool infra/nightly.sh runs each step with
STEP_TOOLS = {"prep": "spark-submit", "train": "ray", "recall": "ray", "evaluate": "python", "publish": "python"}


def _manifest(name: str) -> dict[str, Any]:
    docs = [doc for doc in yaml.safe_load_all((INFRA / "k8s" / name).read_text()) if doc is not None]
    assert len(docs) == 1, f"{name} holds {len(docs)} documents, expected one"
    return docs[0]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins() -> dict[str, Requirement]:
    """infra/requirements.txt by canonical package name."""
    lines = [line.split("#")[0].strip() for line in (INFRA / "requirements.txt").read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line]
    return {canonicalize_name(req.name): req for req in reqs}


def _pinned_version(req: Requirement) -> str:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
    return specs[0].version


def _image_tag() -> str:
    match = re.search(r"docker build -f infra/Dockerfile -t (\S+) \.", DOCKERFILE.read_text())
    assert match, "infra/Dockerfile's header documents no `docker build -f infra/Dockerfile -t TAG .`"
    return match.group(1)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined; the bodies of
    heredocs are left out."""
    instructions, heredoc_end = [], None
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        if heredoc_end is not None:
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, rest = line.strip().partition(" ")
        instructions.append((word.upper(), rest))
        heredoc = re.search(r"<<-?'?(\w+)'?", rest)
        heredoc_end = heredoc.group(1) if heredoc else None
    return instructions


def _dockerfile_heredocs() -> list[str]:
    return [m.group(2) for m in re.finditer(r"<<-?'?(\w+)'?[^\n]*\n(.*?)\n\1\n", DOCKERFILE.read_text(), re.DOTALL)]


def _strings(node: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    """Every (key, string) of a parsed YAML tree; the items of a list have the list's key."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield from _strings(child, child_key)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif isinstance(node, str):
        yield key, node


def _images(doc: dict[str, Any]) -> list[str]:
    """The container images a manifest runs: `image:` fields and Spark's executor image conf."""
    images = []
    for key, value in _strings(doc):
        if key == "image":
            images.append(value)
        images += re.findall(r"spark\.kubernetes\.container\.image=(\S+)", value)
    return images


def _nightly_command(argv: list[str]) -> tuple[argparse.Namespace, Config]:
    """Parse a `watchnext nightly` command line (argparse checks the step) and validate its
    --set overrides."""
    args = build_parser().parse_args(argv)
    assert args.command == "nightly", argv
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date), argv
    return args, load_config(None, args.overrides)


def _rayjob_command(doc: dict[str, Any]) -> list[str]:
    words = shlex.split(doc["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "watchnext"], words
    return words[3:]


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _worker_cpus(doc: dict[str, Any]) -> float:
    total = 0.0
    for group in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        total += group["replicas"] * _cpu(str(container["resources"]["limits"]["cpu"]))
    return total


def _recording_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Stand-ins for spark-submit, ray and python that append their arguments to a file, one
    JSON list per call, and succeed; the environment that makes infra/nightly.sh use them."""
    calls, bin_dir = tmp_path / "calls.jsonl", tmp_path / "bin"
    bin_dir.mkdir()
    for tool in STEP_TOOLS.values():
        path = bin_dir / tool
        path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"with open({str(calls)!r}, 'a') as f:\n"
                        f"    f.write(json.dumps([{tool!r}, *sys.argv[1:]]) + '\\n')\n")
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SPARK_SUBMIT": str(bin_dir / "spark-submit"), "PYTHON": str(bin_dir / "python")}
    return env, calls


def _watchnext_argv(call: list[str]) -> list[str]:
    """The watchnext command line inside a recorded call of spark-submit, ray or python."""
    tool, *argv = call
    if tool == "spark-submit":
        main = next(i for i, arg in enumerate(argv) if arg.endswith("infra/spark_main.py"))
        return argv[main + 1:]
    if tool == "ray":
        argv = argv[argv.index("--") + 1:]
        assert argv[0] == "python", call
        argv = argv[1:]
    assert argv[:2] == ["-m", "watchnext"], call
    return argv[2:]


def _without_watchnext_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WATCHNEXT_")}


# --- Kubernetes manifests


def test_k8s_holds_exactly_the_known_manifests():
    assert sorted(p.name for p in (INFRA / "k8s").glob("*.y*ml")) == sorted(MANIFESTS)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_has_its_api_version_and_kind(name):
    doc = _manifest(name)
    api_version, kind, _ = MANIFESTS[name]
    assert (doc["apiVersion"], doc["kind"]) == (api_version, kind)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_runs_the_image_the_dockerfile_builds(name):
    images = _images(_manifest(name))
    assert images, f"{name} names no image"
    assert set(images) == {_image_tag()}


def test_spark_application_runs_the_prep_step_from_the_image():
    spec = _manifest("spark-prep.yaml")["spec"]
    args, _ = _nightly_command(spec["arguments"])
    assert args.step == "prep"
    main = spec["mainApplicationFile"]
    assert main.startswith(IMAGE_REPO)
    assert (REPO / main[len(IMAGE_REPO):]).is_file()
    assert spec["sparkVersion"] == importlib.metadata.version("pyspark")
    conf = spec["sparkConf"]
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"


@pytest.mark.parametrize("name", ["rayjob-train.yaml", "rayjob-recall.yaml"])
def test_rayjob_joins_its_own_cluster_of_the_installed_ray(name):
    doc = _manifest(name)
    args, cfg = _nightly_command(_rayjob_command(doc))
    assert args.step == MANIFESTS[name][2]
    assert cfg.ray.address == "auto"
    assert doc["spec"]["rayClusterSpec"]["rayVersion"] == importlib.metadata.version("ray")
    assert doc["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_workers_fit_their_cluster():
    # Ray Data's read tasks need at least one CPU beside the training workers and the actors
    train = _manifest("rayjob-train.yaml")
    _, cfg = _nightly_command(_rayjob_command(train))
    assert cfg.train.workers * cfg.train.cpus_per_worker + 1 <= _worker_cpus(train)
    recall = _manifest("rayjob-recall.yaml")
    _, cfg = _nightly_command(_rayjob_command(recall))
    assert cfg.recall.actors * cfg.recall.faiss_threads + 1 <= _worker_cpus(recall)


def test_cronjob_runs_every_step_of_yesterday_in_order_with_the_right_tool(tmp_path):
    doc = _manifest("cronjob-nightly.yaml")
    assert doc["spec"]["schedule"] == "0 2 * * *"
    assert doc["spec"]["concurrencyPolicy"] == "Forbid"
    container = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert shlex.split(container["command"][-1])[:2] == ["infra/nightly.sh", "all"]
    if shutil.which("zip") is None:
        pytest.skip("infra/spark-submit.sh zips the packages with zip, which is not installed")

    tools_env, calls = _recording_tools(tmp_path)
    pod_env = {var["name"]: var["value"] for var in container["env"] if "value" in var}
    env = {**_without_watchnext_env(), **pod_env, **tools_env}
    done = subprocess.run(container["command"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    steps = []
    for call in recorded:
        args, cfg = _nightly_command(_watchnext_argv(call))
        assert call[0] == STEP_TOOLS[args.step]
        assert cfg.ray.address == ("auto" if call[0] == "ray" else None)
        assert (args.date, args.data, args.root) == (yesterday, pod_env["WATCHNEXT_DATA"], pod_env["WATCHNEXT_ROOT"])
        steps.append(args.step)
    assert steps == list(NIGHTLY_STEPS)


# --- the image and its pins


def test_requirements_pin_every_dependency_of_pyproject_to_the_installed_version():
    pins = _pins()
    deps = [Requirement(dep) for dep in _pyproject()["project"]["dependencies"]]
    assert set(pins) == {canonicalize_name(dep.name) for dep in deps}
    for dep in deps:
        pin = pins[canonicalize_name(dep.name)]
        version = _pinned_version(pin)
        assert not pin.extras, f"{pin}: pip constraints (scripts/setup.sh -c) cannot carry extras"
        assert dep.specifier.contains(version, prereleases=True), f"{pin} is outside pyproject's {dep}"
        installed = importlib.metadata.version(dep.name)
        # a local build label (2.13.0+cpu) matches its pin, as for pip
        assert SpecifierSet(f"=={version}").contains(installed, prereleases=True), (
            f"{pin} but {installed} is installed")


def test_dockerfile_installs_the_pinned_torch_then_the_requirements_then_the_project():
    runs = [rest for word, rest in _dockerfile_instructions() if word == "RUN"]
    torch = next(i for i, run in enumerate(runs) if "pip install torch==" in run)
    requirements = next(i for i, run in enumerate(runs) if "pip install -r infra/requirements.txt" in run)
    # the pins carry no extras: the image asks for pyproject's
    extras = {Requirement(d).name: Requirement(d).extras for d in _pyproject()["project"]["dependencies"]}
    for name in (n for n, e in extras.items() if e):
        assert f'"{name}[{",".join(sorted(extras[name]))}]"' in runs[requirements], f"{name}'s extras"
    project = next(i for i, run in enumerate(runs) if "pip install --no-deps ." in run)
    assert torch < requirements < project
    assert re.search(r"torch==(\S+)", runs[torch]).group(1) == _pinned_version(_pins()["torch"])
    assert ("WORKDIR", "/opt/watchnext") in _dockerfile_instructions()


def test_dockerfile_copies_existing_paths_and_every_package():
    copied = []
    for word, rest in _dockerfile_instructions():
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if word != "COPY" or any(w.startswith("<<") for w in words):
            continue
        copied += words[:-1]
    missing = [path for path in copied if not (REPO / path).exists()]
    assert not missing, f"infra/Dockerfile copies paths that do not exist: {missing}"
    packages = [p.rstrip("*") for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert set(packages) | {"pyproject.toml", "README.md", "infra"} <= set(copied)


# --- scripts and schedulers


@pytest.mark.parametrize("script", sorted(p.name for p in INFRA.glob("*.sh")) + ["Dockerfile heredocs"])
def test_shell_scripts_parse(script):
    sources = _dockerfile_heredocs() if script == "Dockerfile heredocs" else [(INFRA / script).read_text()]
    assert sources
    for source in sources:
        done = subprocess.run(["bash", "-n"], input=source, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{script}: {done.stderr}"


def test_spark_submit_ships_every_package():
    packages = [p.rstrip("*") for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]]
    zip_line = next(line for line in (INFRA / "spark-submit.sh").read_text().splitlines() if "zip -" in line)
    assert all(f" {package} " in zip_line for package in packages), zip_line


def test_nightly_sh_lists_the_nightly_steps_in_order():
    match = re.search(r"^steps=\((.*)\)$", NIGHTLY_SH.read_text(), re.MULTILINE)
    assert match and match.group(1).split() == list(NIGHTLY_STEPS)


def test_nightly_sh_without_data_dir_says_which_variable_to_set():
    done = subprocess.run(["bash", str(NIGHTLY_SH), "prep", "2026-11-22"], env=_without_watchnext_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "set WATCHNEXT_DATA" in done.stderr


def test_nightly_sh_refuses_an_unknown_step():
    env = {**_without_watchnext_env(), "WATCHNEXT_DATA": "d", "WATCHNEXT_ROOT": "r"}
    done = subprocess.run(["bash", str(NIGHTLY_SH), "deploy", "2026-11-22"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "usage: infra/nightly.sh all|" + "|".join(NIGHTLY_STEPS) in done.stderr


def _dag_tree() -> ast.Module:
    return ast.parse(DAG_FILE.read_text())


def _literal(node: ast.expr) -> Any:
    """A literal's value, or the source text of any other expression."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _dag_tasks(tree: ast.Module) -> list[tuple[str, str, str]]:
    """(variable, task_id, bash_command) of each `variable = BashOperator(...)`, in the order written."""
    tasks = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "BashOperator":
            kwargs = {kw.arg: _literal(kw.value) for kw in node.value.keywords}
            tasks.append((node.lineno, node.targets[0].id, kwargs["task_id"], kwargs["bash_command"]))
    return [task[1:] for task in sorted(tasks)]


def _dag_chain(tree: ast.Module) -> list[str]:
    """The variables of the DAG's `a >> b >> ...` statement, in order."""
    chains = [node.value for node in ast.walk(tree)
              if isinstance(node, ast.Expr) and isinstance(node.value, ast.BinOp)
              and isinstance(node.value.op, ast.RShift)]
    assert len(chains) == 1, "the DAG orders its tasks in one a >> b >> ... statement"
    names, expr = [], chains[0]
    while isinstance(expr, ast.BinOp):
        names.insert(0, expr.right.id)
        expr = expr.left
    return [expr.id, *names]


def _dag_arguments(tree: ast.Module) -> dict[str, Any]:
    """The keyword arguments of DAG(...), default_args read from its dict."""
    found: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG":
            found.update({kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg != "default_args"})
        elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "default_args":
            found["default_args"] = {_literal(k): _literal(v) for k, v in zip(node.value.keys, node.value.values)}
    return found


def test_airflow_dag_runs_one_task_per_step_in_order():
    tree = _dag_tree()
    tasks = _dag_tasks(tree)
    assert [task_id for _, task_id, _ in tasks] == list(NIGHTLY_STEPS)
    for _, step, command in tasks:
        words = command.split()
        assert words[0].endswith("infra/nightly.sh") and words[1] == step, command
        assert command.endswith("{{ ds }}"), command
    step_of = {variable: task_id for variable, task_id, _ in tasks}
    assert [step_of[variable] for variable in _dag_chain(tree)] == list(NIGHTLY_STEPS)


def test_airflow_dag_backfills_one_night_at_a_time_on_the_cronjob_schedule():
    dag = _dag_arguments(_dag_tree())
    assert dag["schedule"] == _manifest("cronjob-nightly.yaml")["spec"]["schedule"]
    assert dag["catchup"] is True
    assert dag["max_active_runs"] == 1
    assert dag["default_args"]["depends_on_past"] is True
