"""`Progress`: silent when disabled, one summary line per weight when enabled."""

from __future__ import annotations

from mobileprune.oneshot.progress import Progress


def test_disabled_progress_does_nothing_and_its_advance_accepts_both_forms(capsys):
    with Progress(False, total=3) as bar:
        with bar.task("capture", 4) as advance:
            advance()
            advance(4, absolute=True)
        bar.layer_done("d/kernel", "wanda", 0.5, None)
    assert capsys.readouterr() == ("", "")


def test_enabled_progress_prints_one_line_per_weight_and_removes_finished_tasks(capsys):
    bar = Progress(True, total=2)
    with bar:
        with bar.task("sparsegpt d/kernel", 10) as advance:
            advance(4, absolute=True)
            task = bar._progress.tasks[-1]
            assert task.completed == 4 and task.description.endswith("sparsegpt d/kernel")
            advance(2)
            assert task.completed == 6
        assert all("sparsegpt" not in t.description for t in bar._progress.tasks)
        bar.layer_done("d/kernel", "sparsegpt", 0.5, 1.5e-3, 2.0)
        bar.layer_done("e/kernel", "magnitude", 0.25, None)
        overall = bar._progress.tasks[0]
        assert overall.completed == 2 and overall.total == 2
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    first = printed.index("d/kernel  sparsegpt  50.00% zeros  rel. error 1.50e-03  2.0 s")
    assert printed[first + 1] == "e/kernel  magnitude  25.00% zeros"
