"""Output and run-directory paths a command cannot use are one line, exit 2, nothing made."""

from __future__ import annotations

from pathlib import Path

import pytest

from advsec.cli import main
from advsec.errors import ConfigError
from advsec.runio import check_new_run_dir


def test_report_and_export_of_a_file_say_it_is_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "study.toml"
    f.write_text("[experiment]\n")
    for cmd in ("report", "export"):
        assert main([cmd, str(f)]) == 2
        assert "is a file, not a run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "no such run directory" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_folder_that_takes_no_new_entries_is_refused_before_anything() -> None:
    # /proc passes permission checks as root, but nothing can be created in it
    with pytest.raises(ConfigError, match=r"/proc/advsec-x: cannot create it"):
        check_new_run_dir("/proc/advsec-x")


def test_the_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    check_new_run_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
