"""The dev stack's JWT secret (devstack/secret.py): made once, kept, private, never committed."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from devstack.secret import SecretFileError, persistent_secret
from scripts.dev_stack import SECRET_FILE, StackError, parse_config, resolve_secret

ROOT = Path(__file__).resolve().parents[2]


def test_two_launches_sign_with_the_same_secret(tmp_path: Path) -> None:
    """A tab reloaded after a restart keeps a valid token: both launches pick one secret."""
    secret_file = tmp_path / ".dev-secret"
    first = resolve_secret(parse_config(["--secret-file", str(secret_file)], {}))
    second = resolve_secret(parse_config([], {"DEV_SECRET_FILE": str(secret_file)}))
    assert first.jwt_secret == second.jwt_secret and len(first.jwt_secret) >= 32
    assert first.secret_from_file and second.secret_from_file
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret_file.read_text().strip() == first.jwt_secret
    assert list(tmp_path.iterdir()) == [secret_file], "no staging file is left behind"


def test_a_given_secret_wins_and_no_file_is_made(tmp_path: Path) -> None:
    secret_file = tmp_path / ".dev-secret"
    config = resolve_secret(parse_config(["--jwt-secret", "s3cret", "--secret-file", str(secret_file)], {}))
    assert config.jwt_secret == "s3cret" and not config.secret_from_file
    assert not secret_file.exists()


def test_deleting_the_file_makes_a_new_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / ".dev-secret"
    old = persistent_secret(secret_file)
    secret_file.unlink()
    assert persistent_secret(secret_file) != old


def test_an_unusable_secret_file_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretFileError, match="is empty: delete it"):
        persistent_secret(empty)
    with pytest.raises(StackError, match=r"cannot use the development secret: .*no-such-dir"):
        resolve_secret(parse_config(["--secret-file", str(tmp_path / "no-such-dir" / "secret")], {}))


def test_the_secret_file_is_git_and_docker_ignored() -> None:
    assert SECRET_FILE == ROOT / ".dev-secret"
    for name in (".dev-secret", ".dev-secret.123.tmp"):
        checked = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, timeout=30)
        assert checked.returncode == 0, f"{name} is not git-ignored"
    # .dockerignore: the last matching rule decides, so the exclusion must come after every "!".
    rules = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert rules[-1] == ".dev-secret*"
