import numpy as np
import pytest

from prunelens.pie import Population, modal_labels, vote_pies


def test_modal_labels_and_ties_under_both_rules():
    preds = np.array(
        [
            [1, 2, 3, 0],
            [1, 5, 3, 0],
            [2, 2, 5, 9],
            [2, 5, 5, 9],
        ]
    )
    small, tie = modal_labels(preds, 10, "smallest")
    large, tie2 = modal_labels(preds, 10, "largest")
    # every column is a 2-2 tie: (1, 2), (2, 5), (3, 5), (0, 9)
    assert small.tolist() == [1, 2, 3, 0]
    assert large.tolist() == [2, 5, 5, 9]
    assert tie.tolist() == tie2.tolist() == [True, True, True, True]
    mode, tie3 = modal_labels(np.array([[4, 1], [4, 1], [3, 2]]), 10)
    assert mode.tolist() == [4, 1]
    assert tie3.tolist() == [False, False]


def test_vote_pies_ignores_the_true_label():
    idx = np.arange(3)
    labels = np.array([0, 0, 0])
    dense = Population(idx, labels, np.array([[1, 2, 3], [1, 2, 3], [1, 0, 3]]))
    pruned = Population(idx, labels, np.array([[1, 0, 4], [1, 0, 4], [2, 0, 4]]))
    df = vote_pies(dense, pruned)
    assert list(df.columns) == [
        "index",
        "label",
        "dense_mode",
        "pruned_mode",
        "pie",
        "tie",
    ]
    assert df["dense_mode"].tolist() == [1, 2, 3]
    assert df["pruned_mode"].tolist() == [1, 0, 4]
    assert df["pie"].tolist() == [False, True, True]
    assert not df["tie"].any()


def test_mismatched_populations_are_refused():
    a = Population(np.arange(2), np.zeros(2), np.zeros((1, 2), dtype=int))
    b = Population(np.arange(1, 3), np.zeros(2), np.zeros((1, 2), dtype=int))
    with pytest.raises(ValueError, match="different examples"):
        vote_pies(a, b)
