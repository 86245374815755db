"""Issue 20, acceptance 4: the conversation core (bot/*.py outside bot/channels/) and study/
have no WeChat-specific code; only the adapters (bot/channels/wechat, bot/channels/wecom) do.
Read from the source: no import of wechatpy or of a channel adapter, no name and no string
(docstrings and comments aside) that says WeChat. A contact-point channel is a channel name and
an address, whatever the channel."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted([*(ROOT / "bot").glob("*.py"), *(ROOT / "study").rglob("*.py")])
WORDS = ("wechat", "weixin", "wechatpy", "openid")


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _specific(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    where = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""])
            found += [f"{where}:{node.lineno}: imports {m}" for m in modules
                      if m.startswith(("wechatpy", "bot.channels"))]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and any(w in node.value.lower() for w in WORDS)):
            found.append(f"{where}:{node.lineno}: string {node.value[:60]!r}")
        name = (getattr(node, "id", None) or getattr(node, "attr", None)
                or getattr(node, "name", None) or getattr(node, "arg", None))
        if isinstance(name, str) and any(w in name.lower() for w in WORDS):
            found.append(f"{where}:{getattr(node, 'lineno', 0)}: name {name}")
    return found


def test_the_conversation_core_and_study_have_no_wechat_specific_code() -> None:
    assert len(CORE) > 20  # the files are really read
    assert {p.name for p in CORE} >= {"conversation.py", "inbox.py", "linking.py",
                                      "recipients.py", "reachability.py", "contacts.py"}
    found = [problem for path in CORE for problem in _specific(path)]
    assert found == [], "\n".join(found)


def test_the_check_sees_what_an_adapter_has() -> None:
    """The same reading of the WeChat adapter finds what makes it one (so the check works)."""
    found = _specific(ROOT / "bot" / "channels" / "wechat" / "inbound.py")
    assert any("imports wechatpy" in f for f in found)
    assert any("name WECHAT" in f for f in found)
