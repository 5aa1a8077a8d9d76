"""The tables of benchmarks/mitigate.md from the runs of ``benchmarks/mitigate_glas.sh``.

Usage::

    python benchmarks/mitigate_table.py /work/out/i17-mitigate

Per bias and method: mean over seeds (and each seed) of the stress-test sensitivity, the relevance on
the artifact, the clean held-out AUC before -> after, the AUC change, and how many seeds passed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from pathxai.mitigate.stress import PASS_FLOOR, PASS_RATIO


def _f(x: float | None, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return float(np.mean(v)) if v else None


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/out/i17-mitigate")
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in sorted((root / "mitigated").glob("*/mitigation.json")):
        bias, seed, method = p.parent.name.split("-", 2)
        step = json.loads(p.read_text())["steps"][0]
        b, a = step["before"], step["after"]
        own = f"artifact.relevance:{step['artifact']}" if step["kind"] == "artifact" else "stain.sensitivity"
        sev = {
            w: [
                f"{r['check']} {r['severity']} ({_f(r['value'])})"
                for r in step[w]["reaudit"]
                if r["check"] == own
            ]
            for w in ("before", "after")
        }
        runs[(bias, method)].append(
            {
                "seed": seed,
                "sens": (b["stress"]["sensitivity"], a["stress"]["sensitivity"]),
                "flip": (b["stress"]["flip_rate"], a["stress"]["flip_rate"]),
                "rel": (b.get("relevance_on_artifact"), a.get("relevance_on_artifact")),
                "auc": (b["clean_auc"], a["clean_auc"]),
                # recomputed with the current rule (runs made before the rule took |sensitivity|)
                "passed": abs(a["stress"]["sensitivity"])
                <= max(PASS_FLOOR, PASS_RATIO * abs(b["stress"]["sensitivity"])),
                "reaudit": sev,
            }
        )
    print(
        "| bias | method | seeds | stress sensitivity before → after | flip rate before → after | relevance on artifact before → after | clean AUC before → after | ΔAUC | passed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (bias, method), rs in sorted(runs.items()):

        def pair(key: str, rs: list[dict] = rs) -> str:
            return f"{_f(_mean([r[key][0] for r in rs]))} → {_f(_mean([r[key][1] for r in rs]))}"

        d_auc = _mean([r["auc"][1] - r["auc"][0] for r in rs])
        print(
            f"| {bias} | {method} | {','.join(r['seed'] for r in rs)} | {pair('sens')} | {pair('flip')} | {pair('rel')} | "
            f"{pair('auc')} | {_f(d_auc, True)} | {sum(bool(r['passed']) for r in rs)}/{len(rs)} |"
        )
    print("\nPer seed (re-audit severities before → after):\n")
    for (bias, method), rs in sorted(runs.items()):
        for r in rs:
            print(
                f"- {bias} {r['seed']} {method}: sensitivity {_f(r['sens'][0], True)} → {_f(r['sens'][1], True)}, "
                f"relevance {_f(r['rel'][0])} → {_f(r['rel'][1])}, AUC {_f(r['auc'][0])} → {_f(r['auc'][1])}; "
                + (
                    f"re-audit {', '.join(r['reaudit']['before'])} → {', '.join(r['reaudit']['after'])}"
                    if r["reaudit"]["before"] or r["reaudit"]["after"]
                    else "re-audit not run (--no-reaudit)"
                )
            )


if __name__ == "__main__":
    main()
