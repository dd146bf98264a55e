"""The GitHub workflows' security and cache properties that actionlint and zizmor do not check.

actionlint checks syntax, expressions and the `run:` scripts; zizmor checks pins, injection and credentials
in general. These tests check what is particular to this project: pull requests never write a cache, the
model cache follows models.lock, the image is verified with no network, and the pins and install specs are
the ones the rest of the repository uses. The build steps' scripts are run for real (bash, `python` stubbed)
to see the exact build.py command line each event gets.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.unit

WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict):
    for job_id, job in doc["jobs"].items():
        for index, step in enumerate(job.get("steps", [])):
            yield job_id, job, index, step


def action(step: dict) -> str:
    """`actions/cache/restore@<sha>` -> `actions/cache/restore`; "" for a `run:` step."""
    return step.get("uses", "").split("@")[0]


def triggers(doc: dict) -> set[str]:
    on = doc["on"]
    return {on} if isinstance(on, str) else set(on)


def excludes_pull_requests(condition: str | None) -> bool:
    return bool(condition) and re.search(r"github\.event_name\s*!=\s*'pull_request'", condition) is not None


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    assert FILES, f"no workflow in {WORKFLOWS}"
    return {path.name: load(path) for path in FILES}


def test_the_two_workflows_exist(workflows):
    assert {"ci.yml", "docker.yml"} <= set(workflows)


def test_every_action_is_pinned_to_a_commit_sha_with_its_version(workflows):
    """A tag can be moved to other code; a commit sha cannot. The comment says which release it is."""
    for path in FILES:
        parsed = [s["uses"] for _, _, _, s in steps(workflows[path.name]) if "uses" in s]
        parsed += [j["uses"] for j in workflows[path.name]["jobs"].values() if "uses" in j]
        lines = [m for m in map(USES_LINE.match, path.read_text().splitlines()) if m]
        assert sorted(m.group(1) for m in lines) == sorted(parsed), f"{path.name}: a `uses:` the text check missed"
        for m in lines:
            ref, comment = m.group(1), m.group(2)
            if ref.startswith("./"):
                continue
            assert SHA_PIN.match(ref), f"{path.name}: {ref} is not pinned to a full commit sha"
            assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", comment), f"{path.name}: {ref} lacks a `# vX.Y.Z` comment"


def test_one_pin_per_action_across_workflows(workflows):
    pins: dict[str, set[str]] = {}
    for doc in workflows.values():
        for _, _, _, step in steps(doc):
            if "uses" in step:
                name, _, sha = step["uses"].partition("@")
                pins.setdefault(name.split("/")[0] + "/" + name.split("/")[1], set()).add(sha)
    assert {name: shas for name, shas in pins.items() if len(shas) > 1} == {}


def test_permissions_are_least_privilege(workflows):
    """Nothing at the top; jobs read the repository, and a write grant never reaches a pull request."""
    for name, doc in workflows.items():
        assert doc.get("permissions") in ({}, {"contents": "read"}, "read-all"), f"{name}: top-level permissions"
        for job_id, job in doc["jobs"].items():
            perms = job.get("permissions")
            assert isinstance(perms, dict), f"{name}:{job_id}: no explicit permissions"
            writes = {scope for scope, level in perms.items() if level == "write"}
            if writes:
                assert excludes_pull_requests(job.get("if")), f"{name}:{job_id}: {writes} reachable from PRs"
                assert writes <= {"packages"}, f"{name}:{job_id}: writes {writes}"


def test_checkout_never_persists_the_token(workflows):
    for name, doc in workflows.items():
        for job_id, _, _, step in steps(doc):
            if action(step) == "actions/checkout":
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}:{job_id}"


def test_no_expression_is_expanded_inside_a_script(workflows):
    """`${{ }}` in `run:` is pasted into the script before bash sees it: inputs go through env vars."""
    for name, doc in workflows.items():
        for job_id, _, index, step in steps(doc):
            assert "${{" not in step.get("run", ""), f"{name}:{job_id} step {index}"


def test_jobs_time_out_and_superseded_runs_are_cancelled(workflows):
    for name, doc in workflows.items():
        concurrency = doc.get("concurrency") or {}
        assert concurrency.get("cancel-in-progress") is True, name
        assert "github.ref" in concurrency.get("group", ""), name
        for job_id, job in doc["jobs"].items():
            assert 0 < job.get("timeout-minutes", 0) <= 120, f"{name}:{job_id}"


def test_only_trusted_events_save_caches(workflows):
    """actions/cache saves by itself in its post step: only restore/save, with save kept off PRs."""
    for name, doc in workflows.items():
        for job_id, job, _, step in steps(doc):
            uses, inputs = action(step), step.get("with", {})
            assert uses != "actions/cache", f"{name}:{job_id}: use actions/cache/restore + actions/cache/save"
            if uses == "actions/cache/save":
                assert excludes_pull_requests(step.get("if")) or excludes_pull_requests(job.get("if")), job_id
            if uses == "actions/setup-python":
                assert "cache" not in inputs, f"{name}:{job_id}: setup-python's cache saves from PRs too"
            if uses == "docker/setup-buildx-action":
                assert inputs.get("cache-binary") is False, f"{name}:{job_id}: cache-binary writes the cache"


def test_model_cache_is_keyed_on_the_lock_and_filled_by_preload_on_a_miss(workflows):
    doc = workflows["ci.yml"]
    restores = [(job, step) for _, job, _, step in steps(doc) if action(step) == "actions/cache/restore"]
    assert restores, "ci.yml restores no model cache"
    for job, restore in restores:
        key = restore["with"]["key"]
        assert re.search(r"hashFiles\([^)]*'models\.lock'", key), key
        later = job["steps"][job["steps"].index(restore) + 1 :]
        preload = [s for s in later if "modelbake preload --profile" in s.get("run", "")]
        assert preload and f"steps.{restore['id']}.outputs.cache-hit != 'true'" in preload[0].get("if", "")
        saves = [s for s in later if action(s) == "actions/cache/save"]
        assert saves and saves[0]["with"]["path"] == restore["with"]["path"]
        assert saves[0]["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"


def test_ci_installs_the_locks_like_make_setup(workflows):
    """requirements/app.txt + dev.txt, hash-checked and --no-deps, torch CPU from the index the Makefile names."""
    makefile = (REPO / "Makefile").read_text()
    env = workflows["ci.yml"]["env"]
    assert env["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert re.search(rf"^TORCH_INDEX_URL \?= {re.escape(env['TORCH_INDEX_URL'])}$", makefile, re.M)
    assert env["PYTHON_VERSION"] == "3.11"  # the locks' Python
    scripts = "\n".join(s.get("run", "") for _, _, _, s in steps(workflows["ci.yml"]))
    assert (
        '--require-hashes --no-deps --extra-index-url "$TORCH_INDEX_URL" -r requirements/app.txt -r requirements/dev.txt'
        in scripts
    )
    assert "pip install --no-deps -e ." in scripts
    assert 'pytest -m "unit or ml_models"' in scripts


def test_ci_lints_like_make_lint(workflows):
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    scripts = "\n".join(s.get("run", "") for _, _, _, s in steps(workflows["ci.yml"]))
    tools = (
        "ruff check",
        "ruff format --check",
        "mypy",
        "actionlint -shellcheck",
        "zizmor --offline",
        "hadolint Dockerfile Dockerfile.models",
    )
    for tool in tools:
        assert tool in recipe and tool in scripts, tool


def test_docker_jobs_build_models_only_and_verify_the_image_offline(workflows):
    doc = workflows["docker.yml"]
    runs = [(job_id, job, step.get("run", "")) for job_id, job, _, step in steps(doc)]
    assert any("build.py" in run and "--models-only" in run for _, _, run in runs), "no --models-only build"
    verified = [j for j, job, run in runs if re.search(r"docker run --rm --network none \"\$IMAGE\" verify", run)]
    assert "image" in verified
    for job_id in verified:
        job = doc["jobs"][job_id]
        builds = [run for j, _, run in runs if j == job_id and "build.py" in run]
        assert builds and '--tag "$IMAGE"' in builds[0] and "IMAGE" in job["env"], job_id


def test_gha_builds_get_the_runtime_variables_and_buildx(workflows):
    """buildx reads ACTIONS_RUNTIME_TOKEN and the cache URLs, which the runner gives only to actions."""
    for job_id, job in workflows["docker.yml"]["jobs"].items():
        names = [action(s) or s.get("run", "") for s in job["steps"]]
        for i, text in enumerate(names):
            if "build.py" in text and '--cache "gha' in text:
                assert "crazy-max/ghaction-github-runtime" in names[:i], job_id
                assert "docker/setup-buildx-action" in names[:i], job_id


# --- the build steps' scripts, run for real ---------------------------------------------------------------


def build_steps(doc: dict):
    for job_id, job, _, step in steps(doc):
        if re.search(r"python build\.py", step.get("run", "")):
            yield job_id, job, step


def run_script(
    doc: dict, job: dict, step: dict, tmp_path: Path, event: str, secrets: dict[str, str] | None = None, **inputs: str
) -> None:
    """Run `step`'s script as the runner would for `event`: bash, the workflow's, job's and step's `env` with
    their expressions filled in (`secrets.NAME` from `secrets`, absent ones empty as on GitHub), RUNNER_TEMP
    at `tmp_path`, and `python` a stub that records its argv in `tmp_path/argv`."""
    values = {"github.repository": "Octo-Org/Modelbake"} | {f"inputs.{k}": v for k, v in inputs.items()}
    values |= {f"secrets.{k}": v for k, v in (secrets or {}).items()}

    def expand(text: str) -> str:
        return EXPRESSION.sub(lambda m: values.get(m.group(1), ""), str(text))

    env = {
        k: expand(v)
        for scope in (doc.get("env", {}), job.get("env", {}), step.get("env", {}))
        for k, v in scope.items()
    }
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "python").write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {tmp_path / "argv"}\n')
    (stub / "python").chmod(stat.S_IRWXU)
    env |= {"PATH": f"{stub}:{os.environ['PATH']}", "GITHUB_EVENT_NAME": event, "RUNNER_TEMP": str(tmp_path)}
    subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], env=env, check=True)


def run_build_step(doc: dict, job: dict, step: dict, tmp_path: Path, event: str, **inputs: str) -> list[str]:
    """The build.py argv that `step` produces for `event`."""
    record = tmp_path / "argv"
    record.unlink(missing_ok=True)
    run_script(doc, job, step, tmp_path, event, **inputs)
    argv = record.read_text().split("\0")[:-1]
    assert argv[0] == "build.py"
    return argv[1:]


def test_pull_requests_only_read_the_build_cache(workflows, tmp_path):
    doc = workflows["docker.yml"]
    assert "pull_request" in triggers(doc)
    checked = 0
    for job_id, job, step in build_steps(doc):
        if excludes_pull_requests(job.get("if")):
            continue
        pr = run_build_step(doc, job, step, tmp_path, "pull_request")
        assert "--cache" in pr and "--cache-read-only" in pr, f"{job_id}: a PR build writes the cache: {pr}"
        push = run_build_step(doc, job, step, tmp_path, "push")
        assert "--cache-read-only" not in push, f"{job_id}: main never fills the cache"
        assert push[push.index("--cache") + 1].startswith("gha"), job_id
        checked += 1
    assert checked >= 2


def test_registry_cache_job_is_opt_in_and_trusted_refs_only(workflows, tmp_path):
    job = workflows["docker.yml"]["jobs"]["registry-cache"]
    assert "vars." in job["if"] and "default_branch" in job["if"] and excludes_pull_requests(job["if"])
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    ((_, _, step),) = [b for b in build_steps(workflows["docker.yml"]) if b[0] == "registry-cache"]
    argv = run_build_step(workflows["docker.yml"], job, step, tmp_path, "push")
    # Registry references must be lower case; repository names need not be.
    assert argv[argv.index("--cache") + 1] == "registry:ghcr.io/octo-org/modelbake/cache"


def token_steps(job: dict) -> tuple[dict, dict]:
    """A job's step that writes the HF_TOKEN secret to a file, and the one that removes it."""
    (write,) = [s for s in job["steps"] if "secrets.HF_TOKEN" in str(s.get("env", {}).get("HF_TOKEN", ""))]
    (remove,) = [s for s in job["steps"] if 'rm -f "$RUNNER_TEMP/hf_token"' in s.get("run", "")]
    return write, remove


@pytest.mark.parametrize("secret", ["hf_FAKEfakeFAKEfake0123456789abcdef", ""], ids=["secret-set", "no-secret"])
def test_hf_token_reaches_build_py_as_a_file_only(workflows, tmp_path, secret):
    """Each job that builds runs its own three steps in order: the secret (a fake, non-empty value, or none as in
    a fork's pull request) to a file, build.py, the file removed. With a secret: the file holds exactly it,
    readable by the runner's user alone, and build.py gets its path, never the value; without: no file and no
    --hf-token-file (build.py would stop on a missing file)."""
    doc = workflows["docker.yml"]
    token_file = tmp_path / "hf_token"
    checked = 0
    for job_id, job, step in build_steps(doc):
        write, remove = token_steps(job)
        order = [job["steps"].index(s) for s in (write, step, remove)]
        assert order == sorted(order), f"{job_id}: token file, build.py, removal must run in that order"
        assert remove.get("if") == "always()", f"{job_id}: the token file must go even when the build fails"
        run_script(doc, job, write, tmp_path, "push", secrets={"HF_TOKEN": secret})
        argv = run_build_step(doc, job, step, tmp_path, "push", refresh_models="true")
        assert "--refresh-models" in argv and not any(secret and secret in a for a in argv), job_id
        if secret:
            assert token_file.read_text() == secret, job_id  # printf '%s': no newline added
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600, job_id  # umask 077
            assert argv[argv.index("--hf-token-file") + 1] == str(token_file), job_id
        else:
            assert not token_file.exists() and "--hf-token-file" not in argv, job_id
        run_script(doc, job, remove, tmp_path, "push")
        assert not token_file.exists(), job_id
        checked += 1
    assert checked >= 3
    for _, _, _, step in steps(doc):
        for value in step.get("with", {}).values():
            assert "secrets.HF_TOKEN" not in str(value)
