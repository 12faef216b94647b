"""The per-sample table, its relabelled view, and evaluation against a truth file."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from noisyclean.evaluate import detection_metrics
from noisyclean.outputs.table import (
    SCORE_COLUMNS,
    build_table,
    label_matrix,
    noise_rates,
    relabeled_table,
)

CLASSES = ["cat", "dog", "fox"]


def _table() -> pd.DataFrame:
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # a: cat, clean
            [0.1, 0.85, 0.05],  # b: cat, noisy, confident dog -> relabel
            [0.3, 0.4, 0.3],  # c: dog, noisy, unsure -> review
            [0.2, 0.7, 0.1],  # d: dog, clean
            [0.05, 0.05, 0.9],  # e: fox, noisy, but prediction agrees -> review
        ]
    )
    return build_table(
        paths=["a.png", "b.png", "c.png", "d.png", "e.png"],
        labels=np.array([0, 0, 1, 1, 2]),
        classes=CLASSES,
        per_sample_loss=np.array([0.1, 2.3, 0.9, 0.35, 0.1]),
        clean_prob=np.array([0.95, 0.02, 0.30, 0.8, 0.30]),
        probs=probs,
        threshold=0.5,
        relabel_threshold=0.7,
    )


def test_table_columns_actions_and_order() -> None:
    table = _table()
    assert list(table.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    # most suspicious first; ties in clean_prob broken by the larger loss
    assert table["path"].tolist() == ["b.png", "c.png", "e.png", "d.png", "a.png"]
    rows = table.set_index("path")
    assert rows.loc["b.png", "action"] == "relabel"
    assert rows.loc["b.png", "suggested_label"] == "dog"
    assert rows.loc["c.png", "action"] == "review"
    assert rows.loc["c.png", "suggested_label"] == "dog"  # review keeps the given label
    assert rows.loc["e.png", "action"] == "review"
    assert rows.loc["a.png", "action"] == "keep"
    assert rows.loc["b.png", "predicted"] == "dog"
    assert rows.loc["b.png", "predicted_prob"] == pytest.approx(0.85)
    assert rows.loc["b.png", "given_prob"] == pytest.approx(0.1)
    assert rows.loc[["a.png", "b.png", "c.png", "d.png", "e.png"], "is_noisy"].tolist() == [
        False, True, True, False, True
    ]


def test_relabeled_is_a_manifest_with_changes_marked() -> None:
    relabeled = relabeled_table(_table())
    assert list(relabeled.columns) == ["path", "label", "original_label", "changed"]
    assert relabeled["path"].tolist() == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert relabeled["label"].tolist() == ["cat", "dog", "dog", "dog", "fox"]
    assert relabeled["changed"].tolist() == [False, True, False, False, False]


def test_label_matrix_and_noise_rates() -> None:
    table = _table()
    matrix = label_matrix(table, CLASSES)
    assert matrix["cat"] == {"cat": 1, "dog": 1, "fox": 0}
    assert matrix["dog"] == {"cat": 0, "dog": 2, "fox": 0}
    rates = noise_rates(table, CLASSES)
    assert rates["overall"] == pytest.approx(3 / 5)
    assert rates["per_class"] == {"cat": 0.5, "dog": 0.5, "fox": 1.0}


def test_detection_metrics_hand_case() -> None:
    table = _table()
    # true labels: b is really a dog, d is really a fox; the rest are right
    truth = pd.DataFrame({"path": ["a.png", "b.png", "c.png", "d.png", "e.png"],
                          "label": ["cat", "dog", "dog", "fox", "fox"]})
    m = detection_metrics(table, truth)
    # flagged: b, c, e; wrong: b, d -> tp 1, precision 1/3, recall 1/2
    assert m["n_wrong"] == 2 and m["n_flagged"] == 3
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # noise score 1-clean_prob: b .98, c .7, e .7, d .2, a .05; wrong = b, d
    # pairs (wrong, right): (b, a/c/e) all won; (d, a) won, (d, c/e) lost -> 4/6
    assert m["auroc"] == pytest.approx(4 / 6)
    # suggested labels on the wrong rows: b -> dog (right), d -> dog (wrong)
    assert m["suggested_accuracy_on_wrong"] == pytest.approx(0.5)


def test_detection_metrics_with_all_labels_right() -> None:
    table = _table()
    truth = table[["path", "label"]].copy()
    m = detection_metrics(table, truth)
    assert m["n_wrong"] == 0 and m["precision"] == 0.0 and math.isnan(m["auroc"])


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path) -> None:
    import os

    from noisyclean.outputs.write import atomic_write_text

    mask = os.umask(0o022)
    os.umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").read_text() == "x"
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch) -> None:
    """The temporary file's data is flushed with fsync before os.replace puts it in place
    (a power cut could leave a renamed file whose data never reached the disk)."""
    import os

    import noisyclean.outputs.write as write

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(write.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(write.os, "replace",
                        lambda a, b: events.append("replace") or real_replace(a, b))
    write.atomic_write_bytes(tmp_path / "checkpoint.pt", b"weights")
    assert events == ["fsync", "replace"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"weights"
