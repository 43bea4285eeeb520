"""The report's epoch part, on an epoch document a real tiny `padbench epoch` run wrote."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from padbench import loader, report, results
from padbench.cli import main
from padbench.errors import PadbenchError
from padbench.recommend.epoch import choose

REPO = Path(__file__).resolve().parents[1]
TINY = ["--d-model", "16", "--nhead", "2", "--ff", "32", "--layers", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def epoch_doc(tmp_path_factory):
    """``results/epoch/tiny.pbepoch`` from a real run: 40 short lengths, a tiny model, a small sample."""
    root = tmp_path_factory.mktemp("epochs")
    lens = np.clip(np.round(np.random.default_rng(5).lognormal(np.log(10), 0.6, 40)), 1, 40).astype(int)
    (root / "lens.txt").write_text("\n".join(map(str, lens)) + "\n")
    out = root / "results" / "epoch" / "tiny.pbepoch"
    code = main(["epoch", "--lengths", str(root / "lens.txt"), *TINY, "--policies", "random,token_budget,rows,varlen",
                 "--strategies", "padded,packed,rowpacked,varlen_attn", "--sample", "3", "--no-memory",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    return out


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self, text):
        super().__init__()
        self.tables, self._cell = [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def epoch_section(page: str, name: str) -> str:
    start = page.index(f'<section id="epoch-padbench-epoch-{name}')
    return page[start : page.index("</section>", start)]


def every_pair(section: str) -> dict:
    """The "Every pair" table: (policy, strategy) -> {heading: cell}."""
    table = Tables(section[section.index("<h4>Every pair</h4>"):]).tables[0]
    head = table[0]
    return {(r[0], r[1]): dict(zip(head, r)) for r in table[1:]}


def seconds(v):
    return f"{v:,.1f}" if v >= 10 else f"{v:.3g}"


def test_report_shows_the_epoch_document_with_its_numbers(epoch_doc, tmp_path):
    doc = json.loads(epoch_doc.read_text())
    index = report.build_report([epoch_doc.parents[1]], tmp_path / "out")  # epoch documents only: no run files
    page = index.read_text()
    assert '<div class="group" id="epochs">' in page and 'href="#epochs"' in page
    section = epoch_section(page, "tiny")
    rows = every_pair(section)
    assert set(rows) == {(r["policy"], r["strategy"]) for r in doc["rows"]}
    base = next(r for r in doc["rows"] if (r["policy"], r["strategy"]) == ("random", "padded"))
    for r in doc["rows"]:
        cells = rows[(r["policy"], r["strategy"])]
        assert cells["status"] == r["status"] and cells["steps"] == str(r["steps"])
        assert cells["padding"] == f"{100 * r['padding_fraction']:.1f}%"
        if r["status"] == "ok":
            assert cells["equivalent"] == "yes" and r["equivalent"] is True
            assert cells["epoch s"] == seconds(r["epoch_s"])
            assert (cells["95% low"], cells["95% high"]) == (seconds(r["epoch_s_low"]), seconds(r["epoch_s_high"]))
            assert cells["vs random+padded"] == f"{base['epoch_s'] / r['epoch_s']:.2f}×"
            assert cells["batches timed"] == str(r["measured_batches"])
        else:  # varlen_attn on a CPU: its status and why, no number
            assert (r["policy"], r["strategy"], r["status"]) == ("varlen", "varlen_attn", "unsupported")
            assert cells["epoch s"] == cells["95% low"] == cells["vs random+padded"] == cells["equivalent"] == ""
            assert "does not run on cpu" in cells["note"]
    # the table per policy: one line per policy, its padding, a cell per strategy that runs it
    pivot = Tables(section).tables[0]
    by_policy = {r[0]: dict(zip(pivot[0], r)) for r in pivot[1:]}
    assert list(by_policy) == ["random", "token_budget", "rows", "varlen"]
    for r in doc["rows"]:
        cell = by_policy[r["policy"]][r["strategy"]]
        assert (cell == "unsupported") if r["status"] != "ok" else cell.startswith(seconds(r["epoch_s"]))
        assert by_policy[r["policy"]]["padding"] == f"{100 * r['padding_fraction']:.1f}%"
    assert by_policy["varlen"]["padding"] == "0.0%"
    assert by_policy["random"]["padded"].startswith(seconds(base["epoch_s"]))
    # the verdict names what `recommend --epoch` would choose
    chosen = choose(doc["rows"])["chosen"]
    assert f"<code>{chosen['policy']}</code> + <code>{chosen['strategy']}</code>: an epoch in" in section
    assert "Excluded: <code>varlen</code> + <code>varlen_attn</code> (unsupported" in section
    png = re.search(r'<img class="plot" src="([^"]+)"', section).group(1)
    assert (index.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Partial" not in section and "interrupted" not in section


def test_interrupted_and_missing_pairs_are_shown_as_such(epoch_doc, tmp_path):
    doc = json.loads(epoch_doc.read_text())
    stopped = next(r for r in doc["rows"] if (r["policy"], r["strategy"]) == ("token_budget", "packed"))
    stopped.update(status="interrupted", message="interrupted after 1 of 3 batches", epoch_s=123.456,
                   epoch_s_low=100.5, epoch_s_high=150.25)
    doc["rows"] = [r for r in doc["rows"] if r["policy"] != "varlen"]  # the run never reached varlen
    doc["interrupted"] = True
    results.write(tmp_path / "results" / "stopped.pbepoch", doc)
    page = report.build_report([tmp_path / "results"], tmp_path / "out").read_text()
    section = epoch_section(page, "stopped")
    for number in ("123", "100.5", "150.2"):
        assert number not in section
    cells = every_pair(section)[("token_budget", "packed")]
    assert cells["status"] == "interrupted" and cells["epoch s"] == "" and "after 1 of 3" in cells["note"]
    assert '<td class="status" title="interrupted after 1 of 3 batches">interrupted</td>' in section
    assert "The run was interrupted" in section
    assert "Partial: 2 of the pairs" in section and "<code>varlen</code> + <code>packed</code>" in section
    assert section.count(">not reached<") == 2
    assert "Excluded: " in section and "<code>token_budget</code> + <code>packed</code> (interrupted" in section


def test_report_with_runs_and_epochs_and_the_committed_partial_file(epoch_doc, tmp_path):
    res = tmp_path / "results"
    shutil.copytree(epoch_doc.parents[1], res)
    shutil.copy(REPO / "tests" / "data" / "lognormal-cpu-partial.pbepoch", res / "epoch")
    runs = sorted((REPO / "results" / "padbench").glob("*.pbjson"))
    if runs:
        shutil.copy(runs[-1], res)
    page = report.build_report([res], tmp_path / "out").read_text()
    assert page.count('class="epoch"') == 2 and ("<h2>CPU · inference</h2>" in page) == bool(runs)
    partial = epoch_section(page, "lognormal-cpu-partial")
    assert "use <code>grouped</code> + <code>loop</code>: an epoch in 13.1 s (95% interval 12.8-13.8 s)" in partial
    assert "Partial: 4 of the pairs" in partial
    assert every_pair(partial)[("random", "padded")]["epoch s"] == "160.3"


def test_loader_reads_epoch_documents(epoch_doc, tmp_path):
    doc = json.loads(epoch_doc.read_text())
    df = loader.load_epochs([epoch_doc.parents[1]])
    assert df[["policy", "strategy", "status"]].values.tolist() == [[r["policy"], r["strategy"], r["status"]]
                                                                     for r in doc["rows"]]
    assert (df["run"] == "padbench epoch tiny.pbepoch").all() and (df["kind"] == "epoch").all()
    assert df["config_policies"].iloc[0] == ["random", "token_budget", "rows", "varlen"]
    with pytest.raises(PadbenchError, match="no results found"):
        loader.load([epoch_doc.parents[1]])  # run files and asv results only
    runs, epochs = loader.load_report([epoch_doc])
    assert runs.empty and len(epochs) == len(doc["rows"])
    bad = tmp_path / "bad.pbepoch"
    bad.write_text(json.dumps({"kind": "padbench.run", "rows": []}))
    with pytest.raises(PadbenchError, match="not a padbench epoch document"):
        loader.load_epochs([bad])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PadbenchError, match="neither a padbench run file"):
        loader.load_report([tmp_path / "empty"])


def test_report_cli_on_epoch_documents(epoch_doc, tmp_path, capsys):
    assert main(["report", str(epoch_doc.parents[1]), "--out", str(tmp_path / "o")]) == 0
    assert "report written to" in capsys.readouterr().out
    assert "Whole epochs" in (tmp_path / "o" / "index.html").read_text()
