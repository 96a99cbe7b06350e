"""The report's environment section: per study, the runs' split hash, git commit, device, Python and packages (from
each run's provenance), and the protocol settings the study was created with."""

from __future__ import annotations

import json
from html import escape

from benchmark.report.collect import ReportData

STYLE = """
table.environment{table-layout:fixed;width:100%}
table.environment td{text-align:left;overflow-wrap:anywhere;word-break:break-word;vertical-align:top}
abbr{text-decoration:underline dotted;cursor:help}
"""


def _short(text: str, keep: int = 10) -> str:
    """Long hashes shortened to ``keep`` characters, the full value on hover."""
    parts = [p.strip() for p in text.split(" | ")]
    return " | ".join(f'<abbr title="{escape(p)}">{escape(p[:keep])}…</abbr>' if len(p) > keep + 2 else escape(p)
                     for p in parts)


def environment_section(data: ReportData) -> str:
    out = ["<h2>Environment and protocol</h2>"]
    runs = data.runs
    if runs.empty:
        out.append("<p>No runs recorded.</p>")
    else:
        out.append('<table class="environment"><thead><tr><th>study</th><th>runs</th><th>split hash</th>'
                   "<th>git commit</th><th>device</th><th>python</th><th>packages</th></tr></thead><tbody>")
        for name, rows in runs.groupby("study_name", sort=True):
            provenance = [p if isinstance(p, dict) else {} for p in rows["provenance"]]
            commits = _distinct(_commit(p) for p in provenance)
            devices = _distinct(_device(p) for p in provenance)
            pythons = _distinct(_text(p.get("python")) for p in provenance)
            packages = _distinct(", ".join(f"{k} {v}" for k, v in sorted((p.get("packages") or {}).items()))
                                 for p in provenance)
            hashes = _distinct(str(h) for h in rows["split_hash"])
            out.append(f"<tr><td>{escape(str(name))}</td><td>{len(rows)}</td><td>{_short(hashes)}</td>"
                       f"<td>{_short(commits)}</td><td>{escape(devices)}</td><td>{escape(pythons)}</td>"
                       f"<td>{escape(packages)}</td></tr>")
        out.append("</tbody></table>")
    for s in data.studies:
        protocol = s.attrs.get("protocol")
        if isinstance(protocol, dict):
            settings = "; ".join(f"{k}={v}" for k, v in sorted(protocol.items()))
            out.append(f"<p><b>{escape(s.name)}</b>: split scheme {escape(str(s.attrs.get('split_scheme', '?')))}, "
                       f"split hash {escape(str(s.attrs.get('split_hash', '?')))}, search space "
                       f"{escape(str(s.attrs.get('search_space', '?')))}; protocol {escape(settings)}</p>")
    return "\n".join(out)


def _device(provenance: dict) -> str:
    """``cpu, 2 threads``: on a CPU the thread count is part of what reproduces a number."""
    device, threads = _text(provenance.get("device")), provenance.get("torch_threads")
    return f"{device}, {threads} threads" if device == "cpu" and threads else device


def _commit(provenance: dict) -> str:
    git = provenance.get("git")
    if isinstance(git, dict):
        commit = str(git.get("commit") or "?")
        return commit + (" (dirty)" if git.get("dirty") else "")
    return _text(git)


def _text(value) -> str:
    if value is None:
        return "?"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _distinct(values) -> str:
    return " | ".join(sorted(set(values))) or "?"
