"""Make the dashboard that ``asv publish`` writes work offline, and with no failed request."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

from ..errors import PadbenchError


def _git_subjects(repo: Path | None = None) -> dict[str, str]:
    try:
        out = subprocess.run(["git", "log", "--all", "--format=%H%x00%s"], cwd=repo, capture_output=True, check=False,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    return dict(line.split("\0", 1) for line in out.stdout.splitlines() if "\0" in line)


def default_to_a_real_environment(index: dict) -> dict:
    """Order ``index.json`` so that the UI's default selection names graphs that exist.

    asv-tachyon starts from the first value of every parameter, and skips null ones. An
    environment from ``asv run -E existing`` has null for every matrix requirement, so with
    both kinds of results the first values would mix two environments into a combination asv
    never published (every graph request then fails). Environments with no null come first,
    and each parameter's list starts with that environment's value.
    """
    envs = index.get("graph_param_list") or []
    if not envs:
        return index
    envs = sorted(envs, key=lambda e: sum(v is None for v in e.values()))
    index["graph_param_list"] = envs
    first = envs[0]
    for key, values in (index.get("params") or {}).items():
        if key in first and first[key] in values:
            index["params"][key] = [first[key]] + [v for v in values if v != first[key]]
    return index


def _write_missing_graphs(html_dir: Path, index: dict) -> None:
    """An empty series (and empty samples) for every graph the UI will ask for and asv did not write.

    The UI fetches a graph for every (benchmark, environment) pair; asv writes none where a
    benchmark has no data point there (every CUDA benchmark on a CPU machine is skipped). The
    graph view also asks for per-revision timing samples, which asv 0.6 does not publish. An
    empty file says "no data" without a failed request.
    """
    try:
        from asv.graph import Graph
    except ImportError:
        return
    for name in index.get("benchmarks", {}):
        for params in index.get("graph_param_list", []):
            rel = Path(Graph.get_file_path(params, name) + ".json")
            for path, empty in ((html_dir / rel, "[]"), (html_dir / "samples" / Path(*rel.parts[1:]), "{}")):
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(empty)


def install_dashboard(html_dir: str | os.PathLike = "html", repo: str | os.PathLike | None = None) -> Path:
    """Make an ``asv publish`` output work offline; returns its index.html.

    asv 0.6's page loads jQuery/flot/bootstrap from CDNs. This copies the self-contained
    asv-tachyon UI over it (``asv-tachyon install``: index.html + assets/, asv's index.json
    and graphs/ kept, the old page kept as index.legacy.html), then writes the optional data
    files the UI asks for, so that no request fails: ``commits.json`` (commit subjects),
    ``profiles.json`` and ``regressions-ignore.json``.
    """
    html_dir = Path(html_dir)
    index_json = html_dir / "index.json"
    if not index_json.exists():
        raise PadbenchError(f"no {index_json}: run `asv publish` first (or pass its --html-dir)")
    try:
        from asv_tachyon import cli as tachyon
    except ImportError:
        raise PadbenchError("asv-tachyon is not installed (pip install asv-tachyon): "
                            "asv's own dashboard needs CDNs and is blank offline") from None
    with contextlib.redirect_stdout(io.StringIO()):
        tachyon.cmd_install(html_dir, backup=True)

    index = default_to_a_real_environment(json.loads(index_json.read_text()))
    index_json.write_text(json.dumps(index))
    rev_to_hash = {str(k): v for k, v in (index.get("revision_to_hash") or {}).items()}
    subjects = _git_subjects(Path(repo) if repo else None)
    by_hash = {h: subjects.get(h, h[:8]) for h in rev_to_hash.values()}
    commits = {"by_revision": {r: by_hash[h] for r, h in rev_to_hash.items()}, "by_hash": by_hash}
    (html_dir / "commits.json").write_text(json.dumps(commits, indent=1))
    if not (html_dir / "profiles.json").exists():
        (html_dir / "profiles.json").write_text(json.dumps({"paths": {}}))
    if not (html_dir / "regressions-ignore.json").exists():
        (html_dir / "regressions-ignore.json").write_text("[]")
    _write_missing_graphs(html_dir, index)
    return html_dir / "index.html"
