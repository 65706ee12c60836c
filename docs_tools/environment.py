"""The environment block that opens every benchmark page: where and with what each results file was measured.

It is read from the results files themselves (``facts`` in report files, the top level in the focused
scripts' files); a fact a file does not record is said to be missing, never filled in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from featherface_deploy.harness.report import Column, markdown_table

NOT_RECORDED = "not recorded"
_COLUMNS = (Column("file", "Results file"), Column("date", "Date (UTC)"), Column("cpu", "CPU"),
            Column("isa", "ISA flags"), Column("cores", "Usable cores"), Column("threads", "Threads"),
            Column("versions", "Versions"))


def facts_of(payload: Mapping) -> Mapping:
    """The machine facts of a results file: its ``facts`` object, else its top level."""
    return payload.get("facts") or payload


def environment_row(file_name: str, payload: Mapping) -> dict:
    """One row of the environment block for one results file."""
    facts = facts_of(payload)
    versions = facts.get("versions") or {}
    flags = facts.get("isa_flags")
    return {
        "file": f"`{file_name}`",
        "date": facts.get("date", NOT_RECORDED),
        "cpu": " ".join(str(facts[key]) for key in ("cpu", "machine") if facts.get(key)) or NOT_RECORDED,
        "isa": (", ".join(flags) or "none of those probed") if flags is not None else NOT_RECORDED,
        "cores": facts.get("affinity") or facts.get("cpu_count") or NOT_RECORDED,
        "threads": facts.get("threads", NOT_RECORDED),
        "versions": ", ".join(f"{name} {version}" for name, version in versions.items()) or NOT_RECORDED,
    }


def environment_block(results: Sequence[tuple[str, Mapping]]) -> str:
    """The block: one row per results file (name, payload), and what "not recorded" means."""
    rows = [environment_row(name, payload) for name, payload in results]
    text = markdown_table(rows, _COLUMNS)
    if any(NOT_RECORDED in str(value) for row in rows for value in row.values()):
        text += ("\n\n_\"not recorded\": the results file does not say; it was written before the benchmark "
                 "scripts recorded that fact. Rerun the command to record it._")
    return text
