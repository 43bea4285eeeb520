"""Every record carries the `padbench run` command that measures its case again; the report shows it."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from test_report import asv_result_file, rec, write_run

from padbench import report, repro, runner
from padbench.cli import build_parser, main
from padbench.cli.run import cases_from_args
from padbench.model import EncoderSpec


def case_of(command: str) -> runner.Case:
    """The one case `padbench run` builds from ``command``."""
    argv = shlex.split(command.split("  #")[0])
    assert argv[:2] == ["padbench", "run"]
    args = build_parser().parse_args(argv[1:])
    threads = torch.get_num_threads()
    try:
        (case,) = cases_from_args(args)
    finally:
        torch.set_num_threads(threads)  # --threads sets this process's
    return case


@pytest.mark.parametrize("case", [
    runner.Case("packed", "lognormal"),
    runner.Case("loop", "uniform", mode="training", batch_size=7, max_len=33, seed=5,
                spec=EncoderSpec(64, 8, 128, 3, "relu", True, torch.bfloat16)),
    runner.Case("padded", "constant", spec=EncoderSpec(dtype=torch.float64)),
])
def test_command_rebuilds_the_same_case(case):
    command = repro.repro_command(case.validate())
    assert command.startswith("padbench run --strategies ")
    assert case_of(command) == case.validate()
    assert case_of(repro.repro_command(case)) == case.validate()  # max_len left to the distribution


def test_a_lengths_file_with_spaces_is_quoted(tmp_path):
    lengths = tmp_path / "my lengths.txt"
    lengths.write_text("3\n9\n12\n")
    case = runner.Case("padded", f"file:{lengths}", batch_size=3)
    command = repro.repro_command(case)
    assert f"'file:{lengths}'" in command
    assert case_of(command) == case.validate()


def test_threads_and_target_padding_are_named():
    command = repro.repro_command(runner.Case("loop", "uniform", target_padding=0.3), threads=3)
    assert "--threads 3" in command and "# lengths drawn for a target padding ratio of 0.3" in command


def test_record_carries_its_command_and_it_reruns_to_the_same_case(tmp_path, capsys):
    case = runner.Case("loop", "uniform", batch_size=4, max_len=16, seed=3, spec=EncoderSpec(32, 4, 64, 1))
    first = runner.measure_case(case, min_run_time=0.02, max_run_time=0.1, memory=False, check_equivalence=False)
    assert first["status"] == "ok"
    assert first["repro"] == repro.repro_command(case.validate(), threads=torch.get_num_threads())
    out = tmp_path / "again.pbjson"
    argv = shlex.split(first["repro"])[1:] + ["--quick", "--no-memory", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    (again,) = json.loads(out.read_text())["records"]
    same = ("strategy", "distribution", "device", "mode", "batch_size", "max_len", "seed", "num_tokens",
            "padding_ratio", "d_model", "nhead", "dim_feedforward", "num_layers", "activation", "norm_first", "dtype",
            "model_kind", "model_source", "repro")
    assert {k: again[k] for k in same} == {k: first[k] for k in same}


def test_report_shows_the_command_beside_every_row(tmp_path):
    root = tmp_path / "results"
    asv_result_file(root)
    old = rec("padded", tps=1000)  # a record written before `repro` existed: rebuilt from its fields
    new = rec("loop", tps=2000) | {"repro": "padbench run --strategies loop --dists lognormal --seed 0"}
    write_run(root / "padbench" / "r.pbjson", [old, new])
    page = report.build_report([root], tmp_path / "out").read_text()
    assert "<code>padbench run --strategies loop --dists lognormal --seed 0</code>" in page
    assert ("padbench run --strategies padded --dists lognormal --mode inference --device cpu --batch-size 32 "
            "--max-len 256 --d-model 256 --nhead 4 --ff 1024 --layers 2 --activation gelu --dtype float32 "
            "--seed 0") in page
    # asv rows: the suite's case as a padbench run (batch and max_len from its Lengths benchmarks)
    assert "padbench run --strategies loop --dists uniform --mode inference --device cpu --batch-size 32" in page
