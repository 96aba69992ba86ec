"""The class report: one static HTML page (inline CSS and SVG, nothing fetched) with each
problem's score distribution and every check's pass rate, hardest checks first."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from workbook.documents import ClassDocument
from workbook.results import Status
from workbook.words import counted

BINS = 10  # 0-9 %, 10-19 %, ..., 90-100 %
CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; } figcaption { font-size: .85rem; color: #555; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; vertical-align: middle; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.rate { background: #eee; width: 8rem; height: .8rem; display: inline-block; }
.rate span { background: #3a7; height: 100%; display: block; }
.low .rate span { background: #c44; }
"""


def class_report(documents: list[ClassDocument], title: str = "Workbook class report") -> str:
    """The page for the JSON reports of a class (one per submission)."""
    problems = _problems(documents)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{counted(len(documents), 'submission')} · graded with {escape(_graders(documents))}</p>",
        "<h2>Score distribution per problem</h2>",
        '<div class="charts">',
        *(_histogram(slug, label, _shares(documents, slug)) for slug, label in problems),
        "</div>",
        "<h2>Checks, hardest first</h2>",
        _check_table(documents),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _problems(documents: list[ClassDocument]) -> list[tuple[str, str]]:
    seen: dict[str, tuple[int, str]] = {}
    for document in documents:
        for entry in document.problems:
            seen.setdefault(entry.slug, (entry.number, f"{entry.number}. {entry.title}"))
    return [(slug, label) for slug, (_, label) in sorted(seen.items(), key=lambda item: item[1])]


def _shares(documents: list[ClassDocument], slug: str) -> list[float]:
    """Each submission's share of the problem's points, 0..1 (missing counts as 0)."""
    shares = []
    for document in documents:
        entry = document.problem(slug)
        maximum = float(entry.max_score) if entry else 0.0
        shares.append(float(entry.score) / maximum if entry and maximum else 0.0)
    return shares


def _histogram(slug: str, label: str, shares: list[float]) -> str:
    counts = [0] * BINS
    for share in shares:
        counts[min(int(share * BINS), BINS - 1)] += 1
    width, height, bar = 300, 140, 26
    top = max(counts) or 1
    bars = []
    for index, count in enumerate(counts):
        h = round((height - 30) * count / top)
        x, y = 10 + index * (bar + 2), height - 20 - h
        upper = index * 10 + 9 if index < BINS - 1 else 100
        bars.append(
            f'<rect x="{x}" y="{y}" width="{bar}" height="{h}" fill="#3a7">'
            f"<title>{index * 10}-{upper} %: {counted(count, 'submission')}</title></rect>"
            + (
                f'<text x="{x + bar / 2}" y="{y - 3}" font-size="10" text-anchor="middle">{count}</text>'
                if count
                else ""
            )
        )
    axis = (
        f'<text x="10" y="{height - 5}" font-size="10">0 %</text>'
        f'<text x="{10 + BINS * (bar + 2)}" y="{height - 5}" font-size="10" text-anchor="end">100 %</text>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="score distribution of {escape(label)}">{"".join(bars)}{axis}</svg>'
    )
    mean = sum(shares) / len(shares) if shares else 0.0
    return f"<figure>{svg}<figcaption>{escape(label)} · mean {mean * 100:.0f} %</figcaption></figure>"


def check_pass_rates(documents: list[ClassDocument]) -> list[dict[str, Any]]:
    """Every check's pass rate across the class, lowest first (ties in problem order)."""
    passed: dict[tuple, int] = defaultdict(int)
    seen: dict[tuple, int] = defaultdict(int)
    order: dict[tuple, int] = {}
    for document in documents:
        for entry in document.problems:
            for check in entry.checks:
                key = (entry.number, entry.slug, check.id, check.title)
                order.setdefault(key, len(order))
                seen[key] += 1
                passed[key] += check.status == Status.PASS
    rows = [
        {
            "number": k[0],
            "slug": k[1],
            "id": k[2],
            "title": k[3],
            "passed": passed[k],
            "graded": seen[k],
            "rate": passed[k] / seen[k],
        }
        for k in seen
    ]
    return sorted(
        rows, key=lambda row: (row["rate"], row["number"], order[(row["number"], row["slug"], row["id"], row["title"])])
    )


def _check_table(documents: list[ClassDocument]) -> str:
    lines = ["<table>", "<tr><th>Problem</th><th>Check</th><th>Pass rate</th><th></th></tr>"]
    for row in check_pass_rates(documents):
        rate = row["rate"] * 100
        low = ' class="low"' if rate < 50 else ""
        lines.append(
            f"<tr{low}><td>{row['number']}</td><td>{escape(row['title'])} <small>({escape(row['id'])})</small></td>"
            f'<td class="num">{rate:.0f} % ({row["passed"]}/{row["graded"]})</td>'
            f'<td><span class="rate"><span style="width:{rate:.0f}%"></span></span></td></tr>'
        )
    lines.append("</table>")
    return "\n".join(lines)


def _graders(documents: list[ClassDocument]) -> str:
    graders = next((d.graders for d in documents if d.graders), {})
    text = f"{graders.get('source', 'unknown')} graders {graders.get('digest', '')}".strip()
    text += " (--allow-modified-graders)" if graders.get("allow_modified_graders") else ""
    return (
        text
        + f" · {graders.get('sandbox') or 'sandbox: unknown'}"
        + (" (--no-sandbox)" if graders.get("no_sandbox") else "")
    )
