"""`--help` is where a newcomer looks first: every option says what it is for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EDGEGATE = str(Path(sys.executable).parent / "edgegate")


def _help(*command: str) -> str:
    result = subprocess.run(
        [EDGEGATE, *command, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def option_descriptions(help_text: str) -> dict[str, str]:
    """Each option of argparse's `options:` section -> its description, lines joined."""
    section = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    found: dict[str, str] = {}
    option = ""
    for line in section.splitlines():
        start = re.match(r"  (-[^ ]*(?: [A-Z_]+)?(?:, -[^ ]*(?: [A-Z_]+)?)*)(?:\s{2,}(.*))?$", line)
        if start:
            option = start[1].split(",")[-1].split()[0]
            found[option] = (start[2] or "").strip()
        else:
            found[option] = f"{found[option]} {line.strip()}".strip()
    return found


def test_token_issue_help_explains_every_option() -> None:
    text = _help("token", "issue")
    options = option_descriptions(text)
    expected = {
        "--tenant", "--sub", "--scope", "--ttl-s", "--keys-dir", "--nats-url", "--no-audit",
        "--issuer", "--audience", "--json",
    }  # fmt: skip
    assert expected <= options.keys(), options
    undescribed = [name for name, description in options.items() if len(description) < 15]
    assert not undescribed, options
    # What a scope looks like, each kind with an example, and what comes out.
    flat = " ".join(text.split())
    for scope in ("infer:all-MiniLM-L6-v2", "'infer:*'", "tasks:read", "tasks:write", "admin"):
        assert scope in flat
    assert "TOKEN=$(edgegate token issue" in flat and "at most 86400" in flat
