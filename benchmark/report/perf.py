"""The report's Performance section: the targets and measured ratios of a ``benchmark perf`` JSON file."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from benchmark.errors import UserError


def load_perf(path: Path) -> dict:
    try:
        perf = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"--perf {path}: no such file; run `benchmark perf --json {path}` first") from None
    except (OSError, ValueError) as error:
        raise UserError(f"--perf {path}: not a readable JSON file ({error})") from None
    if not isinstance(perf, dict) or not isinstance(perf.get("targets"), dict):
        raise UserError(f"--perf {path}: expected the JSON `benchmark perf` writes, with a 'targets' object")
    return perf


def perf_section(perf: dict) -> str:
    machine = perf.get("machine") or {}
    about = ", ".join(f"{k} {machine[k]}" for k in ("cpu", "cpu_count", "torch", "faiss", "started") if k in machine)
    out = ["<h2>Performance</h2>",
           f'<p class="note">Ratios measured side by side in one `benchmark perf` run ({escape(about)}). A missed '
           "target is shown as missed.</p>",
           '<table class="performance"><thead><tr><th>measure</th><th>target</th><th>measured</th><th>met</th>'
           "</tr></thead><tbody>"]
    for name, target in perf["targets"].items():
        target = target if isinstance(target, dict) else {}
        measured = target.get("measured")
        # None: no ratio, e.g. a pruned study that never reached the unpruned best.
        shown = "n/a" if measured is None else f"{measured:.3g}" if isinstance(measured, float) else str(measured)
        met = target.get("met")
        verdict = "yes" if met else "no" if met is not None else "-"
        if not met and target.get("why"):  # a missed target says why (benchmark perf records it)
            verdict += f": {target['why']}"
        out.append(f"<tr><td>{escape(str(name))}</td><td>{escape(str(target.get('target', '')))}</td>"
                   f"<td>{escape(shown)}</td><td>{escape(verdict)}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
