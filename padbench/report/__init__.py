"""A static HTML report that helps a person choose a batching strategy, and the offline asv dashboard.

`build_report(paths, out_dir="html/report")` reads padbench run files and asv results and writes
``<out_dir>/index.html``: per device and mode, every machine's cases that several runs share side
by side, then per run a figure (tokens/s and speedup over ``padded`` against the padding ratio,
peak memory), a table of every case with its equivalence errors and pad checks, and a verdict
per distribution that only an equivalent strategy can win (others are labelled unverified).
Then every ``padbench epoch`` document (``*.pbepoch``): epoch time with its interval per batching
policy and strategy, padding per policy, equivalence, a figure, and the shortest equivalent epoch.
`install_dashboard(html_dir)` makes the page ``asv publish`` writes work offline.

One job per module: `padbench.loader` loads results, `verdict` judges them (through
`padbench.judge`), `plots` draws, `machines` lines runs up, `page` writes HTML, `epochs` writes
the epoch documents' part, `build` puts these together, `dashboard` patches asv's site.
"""

from ..loader import latest_runs, load
from .build import build_report
from .dashboard import install_dashboard
from .verdict import Verdict, add_judgement, verdicts

__all__ = ["Verdict", "add_judgement", "build_report", "install_dashboard", "latest_runs", "load", "verdicts"]
