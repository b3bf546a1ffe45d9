"""The Prometheus text format 0.0.4, written straight from :mod:`exporter.samples`.

``/metrics`` in the usual format skips prometheus_client's object model: it renders the
generators' rows to text, an order of magnitude faster than ``generate_latest`` on large stores,
and :class:`RenderCache` keeps each series' text until the store changes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import isfinite

from exporter.families import PROBE_FAMILIES, Family
from exporter.results import SeriesSnapshot
from exporter.samples import Extra, Families, Labels, Row, series_samples, target_samples
from exporter.targetview import TargetView, by_target, target_view

# Formatted extra labels by extra (see _suffixes).
_EXTRAS: dict[Extra, tuple[str, ...]] = {}

# One rendered piece: a family and its sample lines for one series or one target.
Piece = tuple[Family, str]
# A target's text, by the versions of its series and by the view rendered.
_TargetEntry = tuple[tuple[tuple[str, str, int], ...], TargetView, tuple[Piece, ...]]
_SeriesKey = tuple[str, str, str]  # (target, node, check)


def render_text(families: Families) -> bytes:
    """``families`` in the text format, each under its header."""
    return families_text(families).encode()


def families_text(families: Families) -> str:
    """``families`` as text, each under its header."""
    memo: dict[Labels, str] = {}
    return "".join(
        [family.header + "".join([t for _, t in _pieces(rows, memo)]) for family, rows in families]
    )


def _pieces(rows: Iterable[Row], memo: dict[Labels, str]) -> list[Piece]:
    """The sample lines of each run of rows of one family; ``memo`` keeps formatted label sets
    across calls. Fewer, longer pieces make a cached scrape faster."""
    pieces: list[Piece] = []
    current: Family | None = None
    chunk = ""
    last: Labels | None = None
    text = ""
    for family, name, labels, extra, values in rows:
        if family is not current:
            if current is not None:
                pieces.append((current, chunk))
            current, chunk = family, ""
        if labels is not last:  # the rows of a series share one labels tuple
            last = labels
            cached = memo.get(labels)
            if cached is None:
                cached = memo[labels] = ",".join([f'{k}="{_escape(v)}"' for k, v in labels])
            text = cached
        if extra is None:
            lines = f"{name}{{{text}}} {values[0]!r}\n" if text else f"{name} {values[0]!r}\n"
        else:
            head = f"{name}{{{text}" if text else f"{name}{{"
            suffixes = _EXTRAS.get(extra) or _suffixes(extra, bool(text))
            lines = "".join(
                [f"{head}{sfx}{v!r}\n" for sfx, v in zip(suffixes, values, strict=True)]
            )
        if not isfinite(sum(values)):
            lines = _go_spellings(lines)
        chunk += lines
    if current is not None:
        pieces.append((current, chunk))
    return pieces


def _go_spellings(lines: str) -> str:
    """repr's infinities and NaN as Prometheus spells them (as Go does): a value ends each line
    ("\\n" in a label value is escaped), after a space."""
    return (
        lines.replace(" inf\n", " +Inf\n").replace(" -inf\n", " -Inf\n").replace(" nan\n", " NaN\n")
    )


def _suffixes(extra: Extra, after_labels: bool) -> tuple[str, ...]:
    """``',reason="dns"} '`` and so on, one for each value of ``extra``."""
    name, values = extra
    comma = "," if after_labels else ""
    suffixes = tuple(f'{comma}{name}="{_escape(v)}"}} ' for v in values)
    if after_labels and len(_EXTRAS) < 1024:  # a few fixed sets: reasons, buckets, phases
        _EXTRAS[extra] = suffixes
    return suffixes


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value


class RenderCache:
    """The rendered text of every (target, node, check) series and every target's values.

    A scrape re-renders only the series whose store version changed since the last scrape, and
    the targets whose view (:mod:`exporter.targetview`) those changes changed; the rest is
    reused. Entries not seen in a scrape are dropped, so removed targets do not linger.
    Concurrent scrapes in worker threads may share one cache: entries are replaced whole, and
    losing a race only renders a series twice.
    """

    __slots__ = ("labels", "series", "targets")

    def __init__(self) -> None:
        self.series: dict[_SeriesKey, tuple[int, tuple[Piece, ...]]] = {}
        self.targets: dict[str, _TargetEntry] = {}
        self.labels: dict[Labels, str] = {}  # formatted label sets


def render_snapshots(snapshots: Sequence[SeriesSnapshot], cache: RenderCache) -> list[str]:
    """Every probe family of ``snapshots`` as text, in exposition order, reusing ``cache``."""
    chunks: dict[Family, list[str]] = {family: [] for family in PROBE_FAMILIES}
    old_series, old_targets = cache.series, cache.targets
    new_series: dict[_SeriesKey, tuple[int, tuple[Piece, ...]]] = {}
    new_targets: dict[str, _TargetEntry] = {}
    labels = cache.labels
    if len(labels) > 8 * len(snapshots) + 64:  # rotated certificates' label sets: start afresh
        labels = cache.labels = {}
    for s in snapshots:
        key = (s.target, s.node, s.check)
        entry = old_series.get(key)
        if entry is None or entry[0] != s.version:
            entry = (s.version, tuple(_pieces(series_samples(s), labels)))
        new_series[key] = entry
        for family, text in entry[1]:
            chunks[family].append(text)
    for target, group in by_target(snapshots):
        versions = tuple((s.node, s.check, s.version) for s in group)
        cached = old_targets.get(target)
        if cached is None or cached[0] != versions:
            view = target_view(target, group)
            if cached is None or cached[1] != view:  # its checks ran, but seldom change it
                cached = (versions, view, tuple(_pieces(target_samples(view), labels)))
            else:
                cached = (versions, view, cached[2])
        new_targets[target] = cached
        for family, text in cached[2]:
            chunks[family].append(text)
    cache.series, cache.targets = new_series, new_targets
    out: list[str] = []
    for family, texts in chunks.items():
        out.append(family.header)
        out.extend(texts)
    return out
