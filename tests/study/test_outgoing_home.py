"""Issue 19, acceptance 2, read off the source: one module queues every outgoing message
(`study/outgoing.py` calls `storage.outbox.enqueue`), and one predicate decides who receives
routine messages (`trial.delivery.receives_routine`; its SQL form in `study/recipients.py`)."""

from __future__ import annotations

import ast

from tests import ROOT as PROJECT_ROOT

ROOT = PROJECT_ROOT
PACKAGES = ("engage", "bot", "scheduler", "study", "messages", "storage", "trial", "bench")


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.append((path.relative_to(ROOT).as_posix(),
                          ast.parse(path.read_text(encoding="utf-8"))))
    return found


def _enqueues(tree: ast.Module) -> list[int]:
    """Lines that call or import the outbox's enqueue functions."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("enqueue", "enqueue_many")
                and isinstance(node.value, ast.Name) and node.value.id == "outbox"):
            lines.append(node.lineno)
        if (isinstance(node, ast.ImportFrom) and node.module == "storage.outbox"
                and any(a.name in ("enqueue", "enqueue_many") for a in node.names)):
            lines.append(node.lineno)
    return lines


def test_one_module_queues_every_outgoing_message() -> None:
    callers = {name: lines for name, tree in _modules() if (lines := _enqueues(tree))}
    assert set(callers) == {"study/outgoing.py"}, callers


def _routine_checks(tree: ast.Module) -> list[int]:
    """Lines that decide routine eligibility by hand: status compared with "active", or
    `opted_out.is_(False)` in a query."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if (any(isinstance(s, ast.Attribute) and s.attr == "status" for s in sides)
                    and any(isinstance(s, ast.Constant) and s.value == "active" for s in sides)):
                lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "is_" and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "opted_out"):
            lines.append(node.lineno)
    return lines


def test_one_predicate_decides_routine_eligibility() -> None:
    checks = {name: lines for name, tree in _modules() if (lines := _routine_checks(tree))}
    assert set(checks) <= {"study/recipients.py"}, checks
