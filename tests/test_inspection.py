"""What build.py reads of images, when the engine or `imagetools` answers something unexpected: one typed error
line each, never a traceback (stand-ins through the functions' own inputs: a client object, a `docker` on PATH)."""

from __future__ import annotations

import os
import sys

import pytest

from modelbake.errors import EngineError, UsageError
from modelbake.image.inspection import image_config, layer_history, local_image

pytestmark = pytest.mark.unit


class Images:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get(self, ref: str):
        raise self.error


class Client:
    def __init__(self, error: Exception) -> None:
        self.images = Images(error)


def test_an_engine_error_other_than_not_found_is_one_engine_error():
    from docker.errors import APIError, ImageNotFound

    assert local_image(Client(ImageNotFound("gone")), "x:1") is None  # the control: not there is an answer
    with pytest.raises(EngineError) as info:
        local_image(Client(APIError("500 Server Error", explanation="snapshotter busy")), "x:1")
    assert info.value.message == "the Docker engine could not show image x:1: snapshotter busy"


@pytest.fixture
def docker_cli(tmp_path, monkeypatch):
    """A `docker` on PATH that prints what the test asks (stdout, exit code)."""

    def answer(stdout: str, code: int = 0, stderr: str = "") -> None:
        stub = tmp_path / "docker"
        stub.write_text(
            f"#!{sys.executable}\nimport sys\nsys.stdout.write({stdout!r})\nsys.stderr.write({stderr!r})\n"
            f"sys.exit({code})\n"
        )
        stub.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    return answer


def test_imagetools_answers_are_checked(docker_cli):
    docker_cli('{"config": {"Labels": {"a": "b"}}, "rootfs": {"diff_ids": []}}')
    assert image_config("r/m@sha256:1")["config"]["Labels"] == {"a": "b"}  # the control: a config is read
    docker_cli('{"linux/amd64": {"config": {"Labels": {"p": "1"}}}, "linux/arm64": {"config": {}}}')
    assert image_config("r/m:1")["config"]["Labels"] == {"p": "1"}  # an index: one config per platform
    for garbage in ("not json at all", "[1, 2]", '{"config": "text"}'):
        docker_cli(garbage)
        with pytest.raises(EngineError, match="answered something that is not an image config"):
            image_config("r/m:1")
    docker_cli("", code=1, stderr="ERROR: r/m:1: not found\n")
    with pytest.raises(UsageError, match=r"--models-image r/m:1: cannot read it: ERROR: r/m:1: not found"):
        image_config("r/m:1")


class NoLayers:
    id = "sha256:empty"
    tags: list[str] = []
    attrs = {"RootFS": {"Type": "layers"}}

    def history(self):
        return None  # what the SDK gives for an image without layers


def test_an_image_without_layers_has_no_history_entries():
    assert layer_history(NoLayers()) == []
