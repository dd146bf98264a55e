"""bench/results-filelayers.md and its block in bench/results.md, from one `python -m bench.filelayers` run.

Why apart from the runs: the text is derived from the measured numbers only (never edited by hand), and
tests/test_bench.py checks it without an engine.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

BLOCK_START = "<!-- filelayers:start (python -m bench.filelayers rewrites this block) -->"
BLOCK_END = "<!-- filelayers:end -->"
CI_BANDWIDTH = 100e6  # bytes/s: the main benchmark's "typical CI-to-hub rate" (bench/__main__.py)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def median_pull(mode) -> float:
    walls = [p.wall for p in mode.pulls if p.ok]
    return statistics.median(walls) if walls else 0.0


def models_built(step) -> list[str]:
    return [
        s["stage"]
        for s in step.report.get("stages", [])
        if s["build"] == "models" and s["status"] == "built" and s["stage"].startswith(("fetch-", "file-"))
    ]


def stage_seconds(step, stage: str) -> float:
    return sum(s["seconds"] for s in step.report.get("stages", []) if s["build"] == "models" and s["stage"] == stage)


def kept_layers(mode) -> tuple[int, int]:
    before = set(mode.first.report["models_image"]["layers"])
    after = mode.bump.report["models_image"]["layers"]
    return sum(1 for d in after if d in before), len(after)


def model_bytes(step, model_id: str) -> int:
    return next((m["files_bytes"] or 0) for m in step.report["models"] if m["id"] == model_id)


WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".whl")


def gap_line(files) -> str:
    """The largest file that is no weight file and the smallest weight file of the real-size tree: any threshold
    between the two gives the same layers for every model of it."""
    hub = [f for f in files if f.path.startswith("huggingface/")]  # only Hugging Face files are ever split
    other = max((f for f in hub if not f.path.endswith(WEIGHTS)), key=lambda f: f.size)
    weight = min((f for f in hub if f.path.endswith(WEIGHTS)), key=lambda f: f.size)
    return (
        f"- Of the Hugging Face files of the real-size tree (the real repos' files), the largest that holds no weights "
        f"is {_mb(other.size)} (`{other.path.rsplit('/', 1)[-1]}` of {other.model_id}) and the smallest weight file "
        f"{_mb(weight.size)} (`{weight.path.rsplit('/', 1)[-1]}` of {weight.model_id}): every threshold between the "
        "two splits the same files."
    )


def threshold_lines(modes, files=()) -> list[str]:
    """What the data says about the threshold: the fixed cost of a step of its own against re-fetching a file."""
    split = next((m for m in modes if m.over != "off"), None)
    one = next((m for m in modes if m.over == "off"), None)
    if split is None or one is None:
        return []
    stage = next((s for s in models_built(split.bump) if s.startswith("fetch-")), "")
    step = stage_seconds(split.bump, stage)
    extra = split.layers - one.layers
    per_layer = (median_pull(split) - median_pull(one)) / extra if extra else 0.0
    even = step * CI_BANDWIDTH
    return [
        "## What the data says about the threshold",
        "",
        f"- One more step costs its fixed part on every cold build: the rest's step of the bump (`{stage}`, "
        f"{_mb(split.bump.fetched)} fetched) took **{step:.1f} s**: for so few bytes, that is the step's own cost "
        "(a container, Python, the hub client).",
        f"- One more layer changed a pull by {per_layer:+.2f} s here ({extra} more layers: "
        f"{median_pull(split):.1f} s against {median_pull(one):.1f} s; the engine downloads up to 3 layers at once).",
        f"- Re-fetching a file with the rest costs its bytes on every revision bump: at {CI_BANDWIDTH / 1e6:.0f} MB/s "
        f"(a typical CI-to-hub rate) a step's {step:.1f} s buys **{_mb(even)}**. A file well below that is cheaper to "
        "fetch again with the rest than to give a step and a layer of its own; a file well above it is cheaper in "
        "a layer of its own. 64 MiB (67.1 MB, Cog's threshold) sits at that break-even within a factor of "
        f"{max(even, 67.1e6) / min(even, 67.1e6):.1f}.",
        *([gap_line(files)] if files else []),
        "",
    ]


def render(command: str, run, big, modes, elapsed: float) -> str:
    from bench.enginecache import code_stamp, load_average, machine

    files = [f for f in run.tree.files if f.model_id == "bart-large-24l"]
    total = sum(f.size for f in files)
    bandwidth = run.mirror.faults.bandwidth
    lines = [
        "# File layers at real size: pull time and a config-only revision bump",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, total run time {elapsed / 60:.1f} min  ",
        f"Machine: {machine()}; load average at the end {load_average()}  ",
        f"Code: {code_stamp(Path(__file__).resolve().parents[1])}  ",  # run.repo, the copy, is gone by now
        f"Model: `bart-large-24l` (bench/realsize_big.py: BART-large with 24+24 layers, float32, random weights, "
        f"loadable): {len(files)} files, {_mb(total)}, of which four shards of {', '.join(_mb(f.size) for f in files if 'model-' in f.path)}. "
        "Served by `modelbake mirror` on 127.0.0.1 ("
        + (f"limited to {bandwidth / 1e6:.0f} MB/s" if bandwidth else "no bandwidth limit")
        + "); pushed to and pulled from Debian's docker-registry on 127.0.0.1.",
        "",
        "## Pull time of the ~3 GB model from the local registry",
        "",
        "The image and its content removed from the engine (the image, every build record of the mode, and "
        "containerd's copy of each layer), then `docker pull`, timed from the outside.",
        "",
        "| | layers | pulls | median |",
        "| --- | ---: | --- | ---: |",
    ]
    for m in modes:
        walls = ", ".join(f"{p.wall:.1f}" if p.ok else "FAILED" for p in m.pulls)
        lines.append(f"| {_mode_name(m)} | {m.layers} | {walls} s | **{median_pull(m):.1f} s** |")
    if not all(m.content_gone for m in modes):
        lines.append("")
        lines.append("Note: containerd kept some layer content between pulls: those pulls did not download it.")
    lines += [
        "",
        "## A config-only revision bump",
        "",
        "A new commit of the repo in the mirror with `config.json` edited (a key added) and every other file the "
        "same, `modelbake lock`, then `build.py --models-only --push` again. Fetched: the bytes the mirror sent "
        "(its request log). Pushed: the blobs the registry completed (its log), at their stored sizes.",
        "",
        "| | fetched | pushed | blobs pushed | build + push | model steps run | layers kept |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for m in modes:
        kept, of = kept_layers(m)
        steps = ", ".join(f"`{s}`" for s in models_built(m.bump)) or "none"
        lines.append(
            f"| {_mode_name(m)} | **{_mb(m.bump.fetched)}** | **{_mb(sum(m.bump.pushed.values()))}** | "
            f"{len(m.bump.pushed)} | {m.bump.wall:.1f} s | {steps} | {kept} of {of} |"
        )
    small = total - sum(f.size for f in files if "model-" in f.path)
    lines += [
        "",
        f"The model's small files (configs, tokenizer, the index) are {_mb(small)}: the file-layer bump fetched "
        + ", ".join(f"{m.bump.fetched / small:.2f}x them" for m in modes if m.over != "off")
        + ". The first build and push of each mode, for scale: "
        + "; ".join(
            f"{_mode_name(m)} {m.first.wall:.1f} s, {_mb(m.first.fetched)} fetched, "
            f"{_mb(sum(m.first.pushed.values()))} pushed"
            for m in modes
        )
        + ".",
        "",
    ]
    lines += threshold_lines(modes, run.tree.files)
    if big is not None:
        lines += _real_size_section(big)
    return "\n".join(lines).rstrip() + "\n"


def _mode_name(mode) -> str:
    return f"{mode.label} (`--file-layers-over {mode.over}`)"


def _real_size_section(big) -> list[str]:
    lines = [
        "## Real size: a sharded model and one file over 2 GB (profile `big`)",
        "",
        f"`build.py --models-only --profile big` through the mirror: {big.build.wall:.1f} s, "
        f"{_mb(big.build.fetched)} fetched. Each big file's layer in the models image:",
        "",
        "| model | file | file bytes | layer bytes | layer |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for m in big.build.report["models"]:
        for f in m["files"]:
            layer, size = f["layer"] or "MISSING", big.layer_sizes.get(f["layer"], 0)
            own = big.file_bytes.get((m["id"], f["path"]), 0)
            lines.append(f"| {m['id']} | {f['path']} | {own:,} | {size:,} | `{layer[:19]}` |")
        rest, size = m["layer"] or "MISSING", big.layer_sizes.get(m["layer"], 0)
        small = sum(n for (model, _), n in big.file_bytes.items() if model == m["id"]) - sum(
            big.file_bytes.get((m["id"], f["path"]), 0) for f in m["files"]
        )
        lines.append(
            f"| {m['id']} | the rest (configs, tokenizer, links, refs) | {small:,} | {size:,} | `{rest[:19]}` |"
        )
    problems = big.notes or ["none: every shard and the 2 GB file are layers of their own, the rest one more per model"]
    lines += [
        "",
        f"Checks: {'; '.join(problems)}.",
        "",
        f"Offline verify from that image (`{big.verify.label}`): **{'ok' if big.verify.ok else 'FAILED'}**, "
        f"{big.verify.wall:.1f} s: `{big.verify.report.get('last_line', '')}`"
        + ("" if big.verify.ok else f" ({big.verify.error.strip()[-300:]})"),
        "",
    ]
    return lines


def results_block(run, modes) -> str:
    """The section bench/results.md carries (between the markers): the two measurements, and where the rest is."""
    from bench.enginecache import machine

    lines = [
        BLOCK_START,
        "## File layers (issue 13): pull time and a config-only revision bump",
        "",
        f"`python -m bench.filelayers` ({time.strftime('%Y-%m-%d', time.gmtime())}; {machine().split(';')[0]}), "
        "the 3 GB sharded model of bench/realsize_big.py; details and the real-size check (a model in four shards, "
        "one file over 2 GB) in [results-filelayers.md](results-filelayers.md).",
        "",
        "| | pull from a local registry (median) | fetched after a config-only bump | pushed after it |",
        "| --- | ---: | ---: | ---: |",
    ]
    for m in modes:
        label = "before: one layer per model" if m.over == "off" else f"after: file layers over {m.over} MiB"
        lines.append(
            f"| {label} | {median_pull(m):.1f} s | {_mb(m.bump.fetched)} | {_mb(sum(m.bump.pushed.values()))} |"
        )
    lines.append(BLOCK_END)
    return "\n".join(lines)


def update_results_block(results: Path, run, modes) -> None:
    """Replace the block in bench/results.md (or append it): the numbers come from this run only."""
    text = results.read_text() if results.is_file() else ""
    results.write_text(with_block(text, results_block(run, modes)))


def with_block(text: str, block: str) -> str:
    head, start, rest = text.partition(BLOCK_START)
    if start:
        _, end, tail = rest.partition(BLOCK_END)
        return head + block + (tail if end else "\n")
    return text.rstrip("\n") + "\n\n" + block + "\n"


def carried_block(previous: str) -> str | None:
    """The block of an earlier results.md, for `python -m bench` to keep when it rewrites the file."""
    _, start, rest = previous.partition(BLOCK_START)
    block, end, _ = rest.partition(BLOCK_END)
    return start + block + end if start and end else None
