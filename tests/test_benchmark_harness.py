"""The benchmark table judges what it says it judges: medians, worst samples for peaks, ratios
against the same run's baseline, and a missed target marked as missed in results.md."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Row, line, write_results


def test_ratio_is_the_median_over_the_baselines_median() -> None:
    row = Row("start-up", [30.0, 40.0, 500.0], "ms", "peer", [100.0, 150.0, 200.0], ratio_max=1 / 3)
    assert row.figure == 40.0 and row.ratio is not None and abs(row.ratio - 40 / 150) < 1e-9
    assert row.met
    assert not Row("start-up", [60.0], "ms", "peer", [150.0], ratio_max=1 / 3).met


def test_peaks_are_judged_on_the_worst_sample() -> None:
    rss = Row("peak RSS", [40.0, 41.0, 54.6], "MB", limit=50.0, worst=True)
    assert rss.figure == 54.6 and not rss.met
    assert Row("peak RSS", [40.0, 41.0, 54.6], "MB", limit=50.0).met  # the median would hide it


def test_results_md_marks_each_row(tmp_path: Path) -> None:
    rows = [
        Row("validating 1,000 files", [0.5, 0.52], "s", "libyaml compose", [0.1, 0.11], limit=1.0),
        Row("requests per pod", [1.2], "", limit=1.1, worst=True),
        Row("the floor", [53.0], "ms", "peer", [160.0]),
    ]
    write_results(rows, ["a note"], tmp_path / "results.md")
    text = (tmp_path / "results.md").read_text()
    assert "| validating 1,000 files | 0.51 s (median of 2: 0.5–0.52) | libyaml compose: 0.105 s" in text
    assert "| requests per pod | 1.2 | - | - | < 1.1 | **missed** |" in text
    assert "| the floor | 53 ms | peer: 160 ms | 0.33× | (reported) | - |" in text
    assert "- a note" in text
    assert line(rows[1]).startswith("MISS requests per pod")


def test_a_benchmark_run_on_its_own_updates_only_its_rows(tmp_path: Path) -> None:
    from benchmarks.harness import update_results

    path = tmp_path / "results.md"
    write_results([Row("a", [1.0], "s", limit=2.0), Row("b", [5.0], "s", limit=2.0)], ["full run note"], path)
    update_results([Row("b", [1.5], "s", limit=2.0), Row("c", [9.0], "MiB", limit=64.0)], ["c's note"], path, "b.py")
    update_results([Row("b", [1.0], "s", limit=2.0), Row("c", [8.0], "MiB", limit=64.0)], ["c's note"], path, "b.py")
    text = path.read_text()
    assert "| a | 1 s | - | - | < 2 s | met |" in text, "another benchmark's row is kept"
    assert text.count("| b |") == 1 and "| b | 1 s | - | - | < 2 s | met |" in text, text
    assert text.index("| b |") < text.index("| c | 8 MiB |") < text.index("## Notes"), text
    assert "- full run note" in text and text.count("- `b.py`: c's note") == 1, text
    assert text.count("- `b.py` run on its own on ") == 1, text
