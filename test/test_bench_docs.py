"""Speed figures quoted in the README and docs are those of the bench JSON reports they cite.

A section (the text under one ``#``/``##`` heading) that quotes a speed figure (``N ms``,
``N FPS``, ``N frames per second``, or a speed-up ``N× faster`` / ``N× torch``) must
cite at least one ``bench/*.json`` report, and every figure in it must be a value of a cited
report at the printed precision (for rates: also 1000 / a value in ms); targets (``< 2 ms``)
are not figures. The engineering log of
docs/performance.md (its "Log of earlier runs" section) is exempt: it says that no report backs
it. The model card's figures are checked by test_model_card.py against model_card_metrics.json.
``N Hz`` is not a figure: the docs use it for sensor and input rates (a 30 Hz camera, the
ARS408's 13 Hz), which are settings of a test or a sensor, not measurements; throughput is quoted
in FPS or ms.
"""
from __future__ import annotations

import json
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
EXEMPT_HEADING = '## Log of earlier runs'
NUMBER = r'(?<![<≤]\s)(?<![\d.])(\d+(?:\.\d+)?)'  # '< 2 ms', '≤ 5 ms' are targets, not figures
FIGURES = [re.compile(NUMBER + r'(?:\s?[–-]\s?' + NUMBER + r')?\s?(?:ms|FPS)\b'),
           re.compile(NUMBER + r'(?:\s?[–-]\s?' + NUMBER + r')?\s(?:frames per second)'),
           re.compile(NUMBER + r'×\s(?:faster|slower|torch)')]
REPORT = re.compile(r'(?:docs/)?bench/([\w.-]+\.json)')


def _sections(path: Path) -> list[tuple[str, str]]:
    """(heading, text) of each section of a Markdown file, code blocks included."""
    sections, heading, lines = [], '(top)', []
    for line in path.read_text().splitlines():
        if re.match(r'#{1,2} ', line):
            sections.append((heading, '\n'.join(lines)))
            heading, lines = line, []
        else:
            lines.append(line)
    sections.append((heading, '\n'.join(lines)))
    return sections


def _figures(text: str) -> list[str]:
    """Every quoted speed figure of ``text``, as printed (both ends of a range)."""
    found = []
    for pattern in FIGURES:
        for match in pattern.finditer(text):
            found += [group for group in match.groups() if group]
    return found


def _values(data) -> list[float]:
    """Every number in a JSON document."""
    if isinstance(data, dict):
        return [v for item in data.values() for v in _values(item)]
    if isinstance(data, list):
        return [v for item in data for v in _values(item)]
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return [float(data)]
    return []


def _matches(figure: str, values: list[float]) -> bool:
    decimals = len(figure.split('.')[1]) if '.' in figure else 0
    candidates = values + [1000.0 / v for v in values if v > 0]
    return any(f'{value:.{decimals}f}' == figure for value in candidates)


def _quoting_sections() -> list[tuple[str, str, str]]:
    return [(path.relative_to(ROOT).as_posix(), heading, text)
            for path in DOCS for heading, text in _sections(path)
            if not heading.startswith(EXEMPT_HEADING) and _figures(text)]


def test_the_check_finds_the_quoted_figures():
    """The README and docs/performance.md quote figures, so an empty scan is a broken scan."""
    files = {name for name, _, _ in _quoting_sections()}
    assert {'README.md', 'docs/performance.md'} <= files


@pytest.mark.parametrize('name, heading, text', _quoting_sections(),
                         ids=lambda value: value if isinstance(value, str) and len(value) < 60
                         else '')
def test_quoted_figures_are_those_of_the_cited_reports(name, heading, text):
    reports = sorted(set(REPORT.findall(text)))
    assert reports, f'{name} {heading!r} quotes {_figures(text)} but cites no docs/bench/*.json'
    values = []
    for report in reports:
        path = ROOT / 'docs' / 'bench' / report
        assert path.is_file(), f'{name} {heading!r} cites missing {path}'
        data = json.loads(path.read_text())
        assert data.get('machine', data).get('cpu'), f'{path} does not record the CPU'
        values += _values(data)
    wrong = [figure for figure in _figures(text) if not _matches(figure, values)]
    assert wrong == [], f'{name} {heading!r}: {wrong} are in none of {reports}'


def test_every_report_is_cited_and_records_the_machine():
    """No orphan report: each docs/bench/*.json is quoted somewhere and names its CPU."""
    cited = {report for path in DOCS for report in REPORT.findall(path.read_text())}
    for path in sorted((ROOT / 'docs' / 'bench').glob('*.json')):
        assert path.name in cited, f'{path} is cited nowhere'
        data = json.loads(path.read_text())
        machine = data.get('machine', data)
        assert machine['cpu'] and machine['cpu_count'] >= 1, path
