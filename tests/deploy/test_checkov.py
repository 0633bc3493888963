"""checkov finds no failed check in anything the chart renders.

checkov runs from its own virtual environment (`make test` makes .venv-checkov from
deploy/tools/checkov-constraints.txt: its dependency pins clash with the services'), on
the output of `helm template` for the defaults and every example. A check the chart skips
is declared on the object it concerns, with its reason (checkov.io/skipN annotations).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from support.helm_chart import REPO, VALUE_SETS, template

CHECKOV = Path(os.environ.get("EDGEGATE_CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))


def run_checkov(directory: Path) -> dict[str, object]:
    assert CHECKOV.exists(), f"no {CHECKOV}: `make test` installs checkov there"
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(directory), "--framework", "kubernetes",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: failed checks (read below)
    report = json.loads(result.stdout)
    summary: dict[str, object] = report["summary"]
    summary["failed_checks"] = [
        (c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]
    ]
    summary["skipped_checks"] = [
        (c["check_id"], c["resource"], c["check_result"].get("suppress_comment", ""))
        for c in report["results"]["skipped_checks"]
    ]
    return summary


def test_checkov_finds_nothing_and_every_skip_has_a_reason(tmp_path: Path) -> None:
    for name, files in VALUE_SETS.items():
        result = template(files)
        assert result.returncode == 0, result.stderr
        (tmp_path / f"{name}.yaml").write_text(result.stdout, encoding="utf-8")
    summary = run_checkov(tmp_path)
    assert summary["failed_checks"] == []
    assert int(summary["passed"]) > 1000
    skipped = summary["skipped_checks"]
    assert isinstance(skipped, list) and skipped
    for check, resource, reason in skipped:
        assert len(reason) > 30, (check, resource)


def test_checkov_would_fail_a_privileged_pod(tmp_path: Path) -> None:
    """The run above can fail: the same checkov flags a container that escalates."""
    result = template()
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (gateway,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-gateway")
    ]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["securityContext"]["readOnlyRootFilesystem"] = False
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(gateway), encoding="utf-8")
    failed = {check for check, _ in run_checkov(tmp_path)["failed_checks"]}
    assert {"CKV_K8S_20", "CKV_K8S_22"} <= failed
