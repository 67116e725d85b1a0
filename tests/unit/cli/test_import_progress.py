"""The import's progress bar: one redrawn line on stderr, ending with a newline at 100%."""

from __future__ import annotations

from mailer.cli.admin import ProgressBar


def test_progress_bar_redraws_one_line_and_ends_it(capsys):
    bar = ProgressBar()
    bar(0, 200)
    bar(100, 200)  # within 0.2 s of the last draw: skipped
    bar(200, 200)  # the end is always drawn
    err = capsys.readouterr().err
    assert err.startswith("\r[") and err.endswith("\n")
    assert "0/200 lines" in err and "200/200 lines" in err and "100.0%" in err
    assert "100/200" not in err
    assert err.count("\n") == 1
