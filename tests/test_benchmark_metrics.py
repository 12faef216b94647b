"""The detection benchmark's figures on hand-made cases (no benchmark data needed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from .conftest import ROOT


def _detect():
    spec = importlib.util.spec_from_file_location("detect", ROOT / "benchmarks" / "detect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_best_cut_f1_is_the_highest_f1_of_any_top_n_cut() -> None:
    detect = _detect()
    wrong = np.array([True, False, True, False, False])
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.0])
    # top-1: 2*1/(1+2) = 0.667, top-2: 2/4, top-3: 2*2/(3+2) = 0.8, top-4: 4/6, top-5: 4/7
    assert detect.best_cut_f1(wrong, score) == (pytest.approx(0.8), 3)
    # the order of the score is what counts, not the order of the rows
    shuffled = np.array([4, 0, 3, 1, 2])
    assert detect.best_cut_f1(wrong[shuffled], score[shuffled]) == (pytest.approx(0.8), 3)
    # a perfect ranking reaches 1 at n = the number of wrong labels
    assert detect.best_cut_f1(wrong, wrong.astype(float)) == (pytest.approx(1.0), 2)
    assert detect.best_cut_f1(np.zeros(3, bool), np.arange(3.0)) == (0.0, 0)


def test_metrics_report_the_best_cut_beside_the_flags() -> None:
    detect = _detect()
    paths = ["a", "b", "c", "d"]
    truth = {"a": "cat", "b": "dog", "c": "dog", "d": "cat"}
    classes = ["cat", "dog"]
    labels = np.array([1, 1, 0, 0])  # a and c are wrong
    row = detect.metrics(paths, flag=[True, True, False, False], score=[4.0, 3.0, 2.0, 1.0],
                         predicted=[0, 1, 1, 0], fixed=[0, 1, 0, 0], truth=truth,
                         classes=classes, labels=labels)
    assert row["f1"] == pytest.approx(0.5)  # P 1/2, R 1/2
    # top-3 (a, b, c) holds both wrong labels: 2*2/(3+2) = 0.8
    assert (row["best_cut_f1"], row["best_cut_n"]) == (pytest.approx(0.8), 3)
    assert row["fixed_acc_on_wrong"] == pytest.approx(0.5)  # a fixed to cat, c kept as cat
