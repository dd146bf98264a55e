"""Plans for unit tests: build.py's inputs read as a dry run does (files and environment only: no engine, no
network), optionally with engine-side facts set by hand, then `make_plan` (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelbake.image.inputs import BuildInputs, gather
from modelbake.image.options import parse_options
from modelbake.image.plan import BuildPlan, make_plan

REPO = Path(__file__).resolve().parents[1]


def inputs_of(argv: list[str], work: Path, environ: Mapping[str, str] | None = None, root: Path = REPO,
              **facts: Any) -> BuildInputs:  # fmt: skip
    """What `gather` reads without an engine; `facts` (e.g. models_image_present=True) as the engine would say."""
    inputs = gather(parse_options(argv), root, environ or {}, work)
    return dataclasses.replace(inputs, **facts) if facts else inputs


def plan_of(argv: list[str], work: Path, environ: Mapping[str, str] | None = None, root: Path = REPO,
            **facts: Any) -> BuildPlan:  # fmt: skip
    return make_plan(inputs_of(argv, work, environ, root, **facts), parse_options(argv))
