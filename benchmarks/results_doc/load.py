"""Reading the results files (`Results`, which remembers what the blocks read) and their provenance: the
commit(s), machine(s) and command a file records, as a table's caption names them."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "benchmarks" / "results"
OUT = ROOT / "RESULTS.md"
REL = "benchmarks/results"


class Results:
    """The results files, loaded by name (relative to benchmarks/results); remembers what was read."""

    def __init__(self, folder: Path = RESULTS_DIR):
        self.folder = folder
        self.used: set[str] = set()
        self._cache: dict[str, Any] = {}

    def __call__(self, name: str) -> dict[str, Any]:
        self.used.add(name)
        return self.peek(name)

    def peek(self, name: str) -> dict[str, Any]:
        """A file's contents without counting it as used (for overviews)."""
        if name not in self._cache:
            self._cache[name] = json.loads((self.folder / name).read_text(encoding="utf-8"))
        return self._cache[name]

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def csv_rows(self, name: str) -> list[dict[str, str]]:
        self.used.add(name)
        with open(self.folder / name, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def names(self, pattern: str = "*.json") -> list[str]:
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.glob(pattern) if p.is_file())

    def unused(self) -> list[str]:
        return [n for n in self.names("**/*.json") if n not in self.used]


COMMIT_KEYS = ("commit", "git_commit", "code_commit")
HEX = re.compile(r"\b[0-9a-f]{7,40}\b")
NOTE_COMMIT = re.compile(r"(?:commit|worktree at|stage code of|code of|code at commit)\s+([0-9a-f]{7,40})\b")


def commits(d: Any) -> list[str]:
    """Every commit a results file records (commit fields at any depth, then commits named in its notes)."""
    fields: list[str] = []
    notes: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k in COMMIT_KEYS and isinstance(v, str):
                    fields.extend(h[:7] for h in HEX.findall(v))
                elif k == "commits" and isinstance(v, list):       # a merge of files from several commits
                    fields.extend(h[:7] for x in v if isinstance(x, str) for h in HEX.findall(x))
                elif k in ("note", "commands", "command") and isinstance(v, str):
                    notes.extend(h[:7] for h in NOTE_COMMIT.findall(v))
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(d)
    out: list[str] = []
    for h in fields + notes:
        if h not in out:
            out.append(h)
    return out


def _machine_text(m: Any) -> str:
    if isinstance(m, str):
        return m
    if not isinstance(m, dict):
        return ""
    parts = []
    gpu = m.get("gpu") or (m.get("device") if m.get("device") not in (None, "cpu") else None)
    if gpu:
        parts.append(str(gpu).split(",")[0])
    cpu = m.get("cpu") if m.get("cpu") not in (None, "", "unknown", "x86_64") else None
    cores = m.get("cores") or m.get("cpu_count") or m.get("cpu_cores")
    if cpu:
        parts.append(str(cpu))
    if cores and not (cpu and "cores" in str(cpu)):
        parts.append(f"{cores} CPU cores")
    if m.get("cpu_native_bf16") is not None:
        parts.append("native bf16" if m["cpu_native_bf16"] else "no native bf16 (AVX2 only)")
    threads = m.get("torch_threads", m.get("threads"))
    if isinstance(threads, int):
        parts.append(f"{threads} torch thread{'s' if threads != 1 else ''}")
    elif threads:
        parts.append(f"threads: {threads}")
    platform = m.get("platform")
    if platform:
        kernel = re.search(r"Linux-([^-]+-fc-v\d+)", platform)
        parts.append(f"Linux {kernel.group(1)}" if kernel else platform)
    if m.get("note"):
        parts.append(str(m["note"]))
    return ", ".join(parts)


def machines(d: dict[str, Any]) -> list[str]:
    """The machine(s) a results file records: its own `machine`, else its jobs' or runs' machines."""
    found: list[Any] = []
    if d.get("machine"):
        found.append(d["machine"])
    else:
        for j in d.get("jobs") or []:
            if isinstance(j, dict) and j.get("machine"):
                found.append(j["machine"])
        runs = d.get("runs")
        for r in (runs.values() if isinstance(runs, dict) else []):
            if isinstance(r, dict) and r.get("machine"):
                found.append(r["machine"])
    out: list[str] = []
    for m in found:
        text = _machine_text(m)
        if text and text not in out:
            out.append(text)
    return out


# Files that hold published figures, not measurements: named without commit or machine.
REFERENCES = {"paper-table2.json": "the paper's published Table 2"}


def provenance(r: Results, name: str, command: bool = True) -> str:
    """'`benchmarks/results/x.json`; commit abc1234; machine: ...; command `...`' for a table's caption."""
    d = r(name)
    if name in REFERENCES:
        return f"`{REL}/{name}` ({REFERENCES[name]})"
    cs = commits(d)
    ms = machines(d)
    text = f"`{REL}/{name}`"
    text += f"; commit{'s' if len(cs) > 1 else ''} {', '.join(cs)}" if cs else "; commit not recorded in the file"
    text += f"; machine: {' | '.join(ms)}" if ms else "; machine not recorded in the file"
    if command and isinstance(d.get("command"), str):
        text += f"; command `{d['command']}`"
    return text


def caption(r: Results, *names: str, command: bool = True) -> str:
    return "Source: " + "; and ".join(provenance(r, n, command) for n in names) + "."
