"""Mutation scores per module from the last ``mutmut run``, equivalent mutants left out.

Run from the repository root after ``mutmut run``. It reads mutmut's results
(``mutants/exporter/*.py.meta``) and the equivalent mutants listed in ``docs/testing.md``
(table rows starting with a mutant name in backticks), prints one Markdown row per module, and
then every surviving mutant that is not listed as equivalent (see it with ``mutmut show NAME``).
A listed mutant that no longer survives is reported too, so that the list stays true.
Mutants not checked (a run of some mutants by name, or an interrupted run) are left out.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py): what a test run of one mutant ended with.
KILLED = {1, 3, 37}  # a test failed, pytest crashed, or the type check caught it
TIMEOUT = {24, -24, 36, 152, 255}  # the tests hung: the mutant was noticed
SURVIVED = {0}
NO_TESTS = {5, 33}
SKIPPED = {34}

_LISTED = re.compile(r"^\|\s*`(exporter\.[^`]+__mutmut_\d+)`\s*\|")


def equivalents(doc: Path) -> set[str]:
    """The mutant names listed as equivalent in ``doc``."""
    lines = doc.read_text().splitlines() if doc.exists() else []
    return {m.group(1) for line in lines if (m := _LISTED.match(line))}


def main() -> int:
    """Print the table and the unexplained survivors."""
    listed = equivalents(Path("docs/testing.md"))
    metas = sorted(Path("mutants/exporter").glob("**/*.py.meta"))
    if not metas:
        print("no results: run `mutmut run --max-children 2` first", file=sys.stderr)
        return 1
    print("| module | checked | killed | survived | no tests | equivalent | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    unexplained: list[str] = []
    stale: list[str] = []
    unchecked = 0
    for meta in metas:
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        count: Counter[str] = Counter()
        for name, code in codes.items():
            if code is None:
                unchecked += 1
                continue
            count["checked"] += 1
            if code in KILLED or code in TIMEOUT:
                count["killed"] += 1
            elif code in SKIPPED:
                count["skipped"] += 1
            elif name in listed:
                count["equivalent"] += 1
            elif code in NO_TESTS:
                count["no tests"] += 1
                unexplained.append(name)
            else:  # survived, or suspicious: either way no test noticed
                count["survived"] += 1
                unexplained.append(name)
            if name in listed and code not in SURVIVED | NO_TESTS:
                stale.append(name)
        judged = count["checked"] - count["skipped"] - count["equivalent"]
        score = f"{100 * count['killed'] / judged:.0f} %" if judged else "not run"
        module = str(meta.relative_to("mutants")).removesuffix(".meta")
        print(
            f"| {module} | {count['checked']} | {count['killed']} | {count['survived']}"
            f" | {count['no tests']} | {count['equivalent']} | {score} |"
        )
    known = {name for meta in metas for name in json.loads(meta.read_text())["exit_code_by_key"]}
    stale += sorted(listed - known)  # the function changed: its mutants were numbered anew
    if unexplained:
        print(f"\nsurvivors not listed as equivalent ({len(unexplained)}):")
        print("\n".join(f"  {name}" for name in unexplained))
    if stale:
        print(f"\nlisted as equivalent but killed or gone ({len(stale)}):")
        print("\n".join(f"  {name}" for name in stale))
    if unchecked:
        print(f"\n{unchecked} mutants not checked (left out above)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
