"""`./dev test` on a machine without Chromium: it installs it as root with apt-get, otherwise
it stops at once with one line. Seams: OPTOUT_CHROMIUM names the executable, and PATH holds a
fake `id` (the user) and a fake `apt-get` that records its arguments; nothing is uninstalled."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"
ONE_LINE = "dev: the browser tests need Chromium: sudo apt-get install chromium\n"


def _fake_bin(tmp_path: Path, *, uid: int, apt_get: bool) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Only what ./dev runs before the check: dirname, and id (faked to choose the user).
    dirname = shutil.which("dirname")
    assert dirname is not None
    (bin_dir / "dirname").symlink_to(dirname)
    _script(bin_dir / "id", f'[ "$1" = -u ] && echo {uid}\n')
    if apt_get:
        _script(bin_dir / "apt-get", f'echo "$*" >> {tmp_path / "apt.log"}\n')
    return bin_dir


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _dev_test(tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(bin_dir),
        "HOME": os.environ.get("HOME", "/root"),
        "OPTOUT_CHROMIUM": str(tmp_path / "no-chromium-here"),
    }
    return subprocess.run(
        [BASH, str(ROOT / "dev"), "test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _apt_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_as_root_with_apt_get_it_installs_chromium(tmp_path: Path) -> None:
    result = _dev_test(tmp_path, _fake_bin(tmp_path, uid=0, apt_get=True))
    # update first, then the install, non-interactive
    calls = _apt_calls(tmp_path)
    assert len(calls) == 2, calls
    assert calls[0].split()[0] == "update"
    assert calls[1].split()[0] == "install" and "-y" in calls[1].split()
    assert calls[1].split()[-1] == "chromium"
    # The fake installed nothing: ./dev says so in its one line instead of running the suite.
    assert result.returncode == 2
    assert result.stderr.endswith(ONE_LINE)
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(("uid", "apt_get"), [(1000, True), (0, False)])
def test_otherwise_one_line_and_exit_2(tmp_path: Path, uid: int, apt_get: bool) -> None:
    result = _dev_test(tmp_path, _fake_bin(tmp_path, uid=uid, apt_get=apt_get))
    assert result.returncode == 2
    assert result.stderr == ONE_LINE
    assert result.stdout == ""
    assert _apt_calls(tmp_path) == []


def test_ci_leaves_the_install_to_dev_test() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci
    assert "./dev test" in ci and ".ci/wheel" in ci
