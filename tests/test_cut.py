"""The scan's cut: the arbitrated count against hand cases, moving the cut by rank, and the
``--cut`` option end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from noisyclean.cli import _add_flag_rows, app
from noisyclean.confident_joint import estimate_wrong_labels
from noisyclean.cut import (
    arbitrated_choice,
    arbitrated_count,
    arbitrated_cut,
    close_call,
    close_call_text,
    counts_agree,
    effective_cut,
    estimate_position,
    move_cut,
    nearer_choice,
)
from noisyclean.mixture import fit_mixture, normalise_losses
from noisyclean.scoring import score_samples
from noisyclean.signals import Signals, label_loss, noise_score

from .conftest import symmetric_noise_predictions

runner = CliRunner()
TINY = ["--epochs", "3", "--width", "8", "--batch-size", "16", "--quiet"]


def test_arbitrated_count_takes_the_count_nearer_the_estimate() -> None:
    # 20% symmetric noise on 10,000 images, as measured: 3,347 / 2,388 / estimate 2,737
    assert arbitrated_choice(3347, 2388, 2737) == ("loss_mixture", 2388)
    # CIFAR-10N worst: 4,364 / 2,721 / 4,345
    assert arbitrated_choice(4364, 2721, 4345) == ("mixture", 4364)
    # a fresh 40% symmetric noise folder: the higher count 1.204 times the lower, so the
    # two do not agree, and the nearer is taken
    assert arbitrated_choice(4952, 4112, 4698) == ("mixture", 4952)
    # a tie keeps the mixture's own count
    assert arbitrated_choice(120, 80, 100) == ("mixture", 120)


def test_arbitrated_count_takes_the_lower_when_the_two_counts_agree() -> None:
    # 50% symmetric noise, 10,000 images: the estimate above both counts, which agree
    # within 20% (5,782 / 5,099 = 1.134): the lower, not the nearer
    assert nearer_choice(5782, 5099, 6176) == ("mixture", 5782)
    assert arbitrated_choice(5782, 5099, 6176) == ("lower", 5099)
    assert arbitrated_count(5782, 5099, 6176) == 5099
    # a fresh folder of 50% symmetric noise (5,000 wrong): the estimate between the two,
    # nearer the higher; the lower is taken
    assert arbitrated_choice(5914, 5258, 5885) == ("lower", 5258)
    # either count may be the lower one
    assert arbitrated_choice(4183, 4886, 4523) == ("lower", 4183)
    # at the edge: 1.19 times agrees, 1.2 times does not (then a tie: the mixture's)
    assert counts_agree(119, 100) and counts_agree(100, 119)
    assert not counts_agree(120, 100)
    assert arbitrated_choice(119, 100, 110) == ("lower", 100)
    assert arbitrated_choice(120, 100, 110) == ("mixture", 120)
    # equal counts: nothing to choose
    assert not counts_agree(50, 50)
    assert arbitrated_choice(50, 50, 60) == ("mixture", 50)
    # the estimate below both counts: still halfway from the nearer one to it
    assert counts_agree(392, 388)
    assert arbitrated_choice(392, 388, 303) == ("midpoint", 345)
    # agreeing counts leave no close call: the lower is taken wherever the estimate lies
    assert close_call(1100, 1000, 1050) is None
    assert close_call(2000, 1000, 1500) == 1000


def test_estimate_position_between_the_two_counts() -> None:
    # a fresh CIFAR-10N worst folder, batch-128 scan: 4,227 / 2,845 / estimate 3,476
    assert estimate_position(4227, 2845, 3476) == pytest.approx(631 / 1382)
    # the order of the two counts does not matter: 0 at the lower, 1 at the higher
    assert estimate_position(2845, 4227, 3476) == pytest.approx(631 / 1382)
    assert estimate_position(200, 100, 100) == 0.0
    assert estimate_position(200, 100, 200) == 1.0
    # outside the two counts: below 0 or above 1
    assert estimate_position(392, 388, 303) == pytest.approx(-85 / 4)
    assert estimate_position(5782, 5099, 6176) == pytest.approx(1077 / 683)
    # equal counts leave no gap to place it in
    assert estimate_position(50, 50, 49) is None


def test_close_call_names_the_count_the_other_side_would_take() -> None:
    # that worst scan took the loss mixture's 2,845; past halfway it would have taken 4,227
    assert arbitrated_choice(4227, 2845, 3476) == ("loss_mixture", 2845)
    assert close_call(4227, 2845, 3476) == 4227
    # the committed seed-0 worst scan: 58% of the way, took 4,133, the other side 2,844
    assert arbitrated_choice(4133, 2844, 3596) == ("mixture", 4133)
    assert close_call(4133, 2844, 3596) == 2844
    # exactly halfway: the tie takes the mixture's count, the other side the loss mixture's
    assert arbitrated_choice(100, 200, 150) == ("mixture", 100)
    assert close_call(100, 200, 150) == 200
    # the band is open: 41% of the way is close, 40% and 60% are not
    assert close_call(0, 100, 41) == 100
    assert close_call(0, 100, 59) == 0
    assert close_call(0, 100, 40) is None
    assert close_call(0, 100, 60) is None
    assert close_call(0, 100, 40, band=0.2) == 100
    # a clear call: 61% of the way (worst seed 0, another session: 4,270 / 2,591 / 3,620)
    assert close_call(4270, 2591, 3620) is None
    # the estimate outside the counts (the nearer count or the midpoint rule): never close
    assert close_call(3347, 2388, 2250) is None
    assert close_call(392, 388, 303) is None
    assert close_call(5782, 5099, 6176) is None
    assert close_call(50, 50, 49) is None


def _arbitrated_summary(
    flagged: int, position: float, other: int, counts: tuple[int, int, int]
) -> dict:
    """``summary.json["cut"]`` of an arbitrated close call: the count flagged, the
    estimate's position, the other side's count and (mixture, loss mixture, estimate)."""
    keys = ("mixture", "loss_mixture", "confident_joint")
    return {"rule": "arbitrated", "flagged": flagged, "estimate_position": position,
            "close_call": other, "counts": dict(zip(keys, counts, strict=True))}


def test_close_call_text_says_where_to_read_on() -> None:
    up = _arbitrated_summary(2845, 0.4566, 4227, (4227, 2845, 3476))
    assert close_call_text(up) == (
        "the estimate (3476) lay 46% of the way from 2845 to 4227 (the two mixtures' "
        "counts); a little further and the cut would have flagged 4227. scores.csv is "
        "sorted most suspicious first: review on to row 4227 (export --top 4227)")
    down = _arbitrated_summary(4133, 0.5834, 2844, (4133, 2844, 3596))
    assert close_call_text(down).endswith(
        "lay 58% of the way from 2844 to 4133 (the two mixtures' counts); a little further "
        "and the cut would have flagged 2844. scores.csv is sorted most suspicious first: "
        "its first 2844 rows are the surest")
    # a position that rounds onto the open band's edge is shown to one decimal (a fresh
    # CIFAR-10N worst scan, images 20000-29999: 4,365 / 2,687 / 3,692)
    assert close_call(4365, 2687, 3692) == 2687
    edge = _arbitrated_summary(4365, 0.5989, 2687, (4365, 2687, 3692))
    assert "lay 59.9% of the way from 2687 to 4365" in close_call_text(edge)
    low_edge = {**edge, "estimate_position": 0.4003}
    assert "lay 40.0% of the way" in close_call_text(low_edge)


def test_arbitrated_count_goes_halfway_when_both_counts_are_above_the_estimate() -> None:
    # Fashion-MNIST, 20% symmetric noise on 10,000 images (noise seed 1, in RESULTS.md):
    # 2,857 / 2,740 / estimate 2,316 (2,000 wrong): halfway from 2,740 to 2,316
    assert arbitrated_choice(2857, 2740, 2316) == ("midpoint", 2528)
    # the digits example: 392 / 388 / 303 (359 wrong)
    assert arbitrated_choice(392, 388, 303) == ("midpoint", 345)
    assert nearer_choice(2857, 2740, 2316) == ("loss_mixture", 2740)
    # the nearer count is the mixture's: halfway from 50 to 8, rounded down
    assert nearer_choice(50, 60, 8) == ("mixture", 50)
    assert arbitrated_choice(50, 60, 8) == ("midpoint", 29)
    # a tie goes to the mixture, also below the estimate
    assert nearer_choice(50, 50, 7) == ("mixture", 50)
    # equal to the lower count is not below it (the two agree: the lower)
    assert arbitrated_choice(50, 49, 49) == ("lower", 49)
    assert arbitrated_choice(50, 40, 40) == ("loss_mixture", 40)


def test_move_cut_by_hand() -> None:
    """Seven samples, three below 0.5. Two flagged: ranks 0 and 1 take the values of ranks
    0 and 1 (r * 3 // 2), ranks 2..6 those of 3 + (r - 2) * 4 // 5 = 3, 3, 4, 5, 6.
    Five flagged: ranks 0..4 take 0, 0, 1, 1, 2 (r * 3 // 5), ranks 5, 6 take 3, 5."""
    values = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9])
    shuffle = np.array([4, 0, 6, 2, 5, 1, 3])
    clean, score = values[shuffle], 1 - values[shuffle]
    two = move_cut(clean, score, 2)
    np.testing.assert_allclose(two[np.argsort(shuffle)], [0.1, 0.2, 0.6, 0.6, 0.7, 0.8, 0.9])
    five = move_cut(clean, score, 5)
    np.testing.assert_allclose(five[np.argsort(shuffle)], [0.1, 0.1, 0.2, 0.2, 0.3, 0.6, 0.8])
    assert (two < 0.5).sum() == 2 and (five < 0.5).sum() == 5
    np.testing.assert_array_equal(move_cut(clean, score, 3), clean)  # already there
    assert (move_cut(clean, score, 0) < 0.5).sum() == 0
    assert (move_cut(clean, score, 7) < 0.5).sum() == 7


def test_move_cut_breaks_ties_by_the_score() -> None:
    """Four samples tied at clean probability 0 (one below 0.5 would be a tie): with two
    to flag, the two with the higher score are flagged."""
    clean = np.array([0.0, 0.0, 0.0, 0.0, 0.9, 1.0])
    score = np.array([0.5, 0.9, 0.7, 0.6, 0.2, 0.1])
    moved = move_cut(clean, score, 2)
    assert set(np.flatnonzero(moved < 0.5)) == {1, 2}


def test_move_cut_leaves_an_all_or_nothing_cut_alone() -> None:
    clean, score = np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2, 0.3])
    np.testing.assert_array_equal(move_cut(clean, score, 2), clean)
    with pytest.raises(ValueError, match="n_flagged"):
        move_cut(clean, score, 4)
    with pytest.raises(ValueError, match="shape"):
        move_cut(clean, score[:2], 1)


@pytest.mark.parametrize(("seed", "chosen"), [(0, "lower"), (1, "midpoint")])
def test_arbitrated_cut_counts_and_flags(seed: int, chosen: str) -> None:
    """The summary's three counts are the two mixtures' and the confident joint's, the
    count flagged is the arbitrated one, and the flagged samples are the highest scores.
    Seed 0 (mixtures 116 and 114, estimate 119) flags the lower of the two agreeing
    counts, 114; seed 1 (mixtures 111 and 111, estimate 108) goes halfway, 109."""
    probs, labels = symmetric_noise_predictions(seed)
    score = noise_score(probs, labels)
    clean = fit_mixture(score, "gmm", 0).clean_prob
    moved, summary = arbitrated_cut(clean, score, probs, labels)
    counts = summary["counts"]
    assert counts["mixture"] == int((clean < 0.5).sum())
    loss = normalise_losses(label_loss(probs, labels))
    assert counts["loss_mixture"] == int((fit_mixture(loss, "gmm", 0).clean_prob < 0.5).sum())
    names = [str(k) for k in range(4)]
    assert counts["confident_joint"] == estimate_wrong_labels(probs, labels, names)["count"]
    n = arbitrated_count(counts["mixture"], counts["loss_mixture"], counts["confident_joint"])
    assert summary["flagged"] == n == int((moved < 0.5).sum())
    assert summary["chosen"] == chosen
    assert (chosen, n) == arbitrated_choice(
        counts["mixture"], counts["loss_mixture"], counts["confident_joint"]
    )
    order = np.lexsort((-score, clean))
    assert set(np.flatnonzero(moved < 0.5)) == set(order[:n])


def test_score_samples_cut_option() -> None:
    probs, labels = symmetric_noise_predictions(1)
    signals = [Signals(label_loss(probs, labels), probs)]
    paths = [f"{i}.png" for i in range(len(labels))]
    score = noise_score(probs, labels)
    names = ["a", "b", "c", "d"]
    plain = score_samples(paths, labels, names, [score], signals, cut="mixture")
    assert plain.cut == {"rule": "mixture", "flagged": int(plain.table["is_noisy"].sum()),
                         "order": "fit_score"}
    arbitrated = score_samples(paths, labels, names, [score], signals, cut="arbitrated")
    assert arbitrated.cut["rule"] == "arbitrated"
    assert int(arbitrated.table["is_noisy"].sum()) == arbitrated.cut["flagged"]
    with pytest.raises(ValueError, match="unknown cut"):
        score_samples(paths, labels, names, [score], signals, cut="median")


def test_effective_cut_is_arbitrated_for_loss_plus_margin_only() -> None:
    assert effective_cut("arbitrated", "loss+margin") == "arbitrated"
    assert effective_cut("arbitrated", "loss") == "mixture"
    assert effective_cut("mixture", "loss+margin") == "mixture"


def test_scan_cut_option_end_to_end(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Same seed, same training: ``--cut mixture`` flags where clean_prob < 0.5, the
    default flags the arbitrated count, the top of the same ranking, and both record how."""
    root, _ = digits_folder
    runs = {}
    loud = [a for a in TINY if a != "--quiet"]
    for name, extra in (("default", []), ("mixture", ["--cut", "mixture"])):
        out = tmp_path / name
        result = runner.invoke(app, ["scan", str(root), "--out", str(out), *loud, *extra])
        assert result.exit_code == 0, result.output
        assert ("cut (arbitrated)" in result.output) == (name == "default")
        runs[name] = (pd.read_csv(out / "scores.csv").set_index("path"),
                      json.loads((out / "summary.json").read_text()))
    mixture_table, mixture_summary = runs["mixture"]
    table, summary = runs["default"]
    assert mixture_summary["cut"]["rule"] == "mixture"
    assert mixture_table["is_noisy"].equals(mixture_table["clean_prob"] < 0.5)
    assert summary["cut"]["rule"] == "arbitrated"
    assert summary["settings"]["cut"] == "arbitrated"
    counts = summary["cut"]["counts"]
    assert counts["mixture"] == int(mixture_table["is_noisy"].sum())
    chosen, n = arbitrated_choice(
        counts["mixture"], counts["loss_mixture"], counts["confident_joint"]
    )
    assert int(table["is_noisy"].sum()) == n == summary["cut"]["flagged"]
    assert summary["cut"]["chosen"] == chosen
    three = (counts["mixture"], counts["loss_mixture"], counts["confident_joint"])
    position = estimate_position(*three)
    assert summary["cut"]["estimate_position"] == (
        None if position is None else round(position, 4))
    assert summary["cut"]["close_call"] == close_call(*three)
    table = table.loc[mixture_table.index]
    np.testing.assert_allclose(table["loss"], mixture_table["loss"])  # same training
    ranked = mixture_table.sort_values(["clean_prob", "fit_loss"], ascending=[True, False])
    assert set(table.index[table["is_noisy"]]) == set(ranked.index[:n])

    bad = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "bad"), *TINY,
                              "--cut", "median"])
    assert bad.exit_code != 0 and "--cut must be one of" in bad.output


@pytest.mark.parametrize(
    ("chosen", "words"),
    [("mixture", "flagged the first, nearer the estimate"),
     ("loss_mixture", "flagged the second, nearer the estimate"),
     ("midpoint", "flagged halfway from the nearer one to the estimate"),
     ("lower", "flagged the lower, the two within 20% of each other (the estimate not below "
               "both)"),
     (None, "flagged the one nearer the estimate")],  # a summary from before "chosen"
)
def test_scan_summary_table_says_which_count_the_cut_took(
    chosen: str | None, words: str
) -> None:
    cut = {"rule": "arbitrated", "flagged": 345,
           "counts": {"mixture": 392, "loss_mixture": 388, "confident_joint": 303}}
    if chosen is not None:
        cut["chosen"] = chosen
    summary = {"counts": {"noisy": 345, "relabel": 300, "review": 45},
               "estimated_noise_rate": {"overall": 0.19}, "cut": cut,
               "estimated_wrong_labels": {"count": 303, "rate": 0.169}}
    table = Table()
    _add_flag_rows(table, summary)
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(table)
    text = console.export_text()
    assert "loss+margin mixture 392, loss mixture 388: " + words in text
    assert "~303 (16.9%)" in text


def test_scan_summary_table_shows_a_close_call() -> None:
    cut = {**_arbitrated_summary(2845, 0.4566, 4227, (4227, 2845, 3476)),
           "chosen": "loss_mixture"}
    summary = {"counts": {"noisy": 2845, "relabel": 300, "review": 2545},
               "estimated_noise_rate": {"overall": 0.2845}, "cut": cut}
    texts = []
    for close in (4227, None):
        table = Table()
        _add_flag_rows(table, {**summary, "cut": {**cut, "close_call": close}})
        console = Console(width=400, record=True, file=io.StringIO())
        console.print(table)
        texts.append(" ".join(console.export_text().split()))
    assert "close call" in texts[0] and "review on to row 4227" in texts[0]
    assert "close call" not in texts[1] and "4227." not in texts[1]


def _counts(three: tuple[int, int, int]) -> dict[str, int]:
    """``summary.json["cut"]["counts"]`` for (mixture, loss mixture, estimate)."""
    return {"mixture": three[0], "loss_mixture": three[1], "confident_joint": three[2]}


def _cut_row(cut: dict) -> str:
    """The summary table's ``cut (arbitrated)`` row (and any close call) for ``cut``, on
    one line."""
    summary = {"counts": {"noisy": cut["flagged"], "relabel": 0, "review": cut["flagged"]},
               "estimated_noise_rate": {"overall": 0.0}, "cut": cut}
    table = Table()
    _add_flag_rows(table, summary)
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(table)
    return " ".join(console.export_text().split())


@pytest.mark.parametrize(
    ("three", "flagged", "chosen", "words"),
    [  # the first mixture flags nothing: move_cut cannot move the cut to the second's 10
     ((0, 10, 20), 0, "loss_mixture", "loss mixture 10: flagged 0, the first's count (the "
      "second is nearer the estimate, but with the first flagging no image the cut cannot "
      "move)"),
     # ... or every image (30 of 30): halfway from 20 to the estimate, 19, is out of reach
     ((30, 20, 18), 30, "midpoint", "loss mixture 20: flagged 30, the first's count (both "
      "are above the estimate, halfway to it was chosen, but with the first flagging "
      "every image the cut cannot move)"),
     # ... or every image, the two counts agreeing: the lower, 27, is out of reach
     ((30, 27, 28), 30, "lower", "loss mixture 27: flagged 30, the first's count (the two "
      "agree, the lower was chosen, but with the first flagging every image the cut cannot "
      "move)"),
     # equal counts: there was nothing to choose
     ((10, 10, 20), 10, "mixture", "loss mixture 10: flagged 10, the count of both"),
     ((0, 0, 5), 0, "mixture", "loss mixture 0: flagged 0, the count of both")],
)
def test_scan_summary_table_on_a_degenerate_cut(
    three: tuple[int, int, int], flagged: int, chosen: str, words: str
) -> None:
    """Identical images can leave the first mixture flagging none or all (the cut then
    stays where it is) or both mixtures at one count: the row says what was flagged."""
    cut = {"rule": "arbitrated", "flagged": flagged, "chosen": chosen,
           "counts": _counts(three), "close_call": close_call(*three)}
    # the count the rule chose was not reached, or there was nothing to choose
    assert (chosen, flagged) != arbitrated_choice(*three) or three[0] == three[1]
    text = _cut_row(cut)
    assert f"loss+margin mixture {three[0]}, " + words in text
    assert "flagged the" not in text


def test_scan_summary_table_when_the_lower_agreeing_count_is_the_first() -> None:
    """The first mixture's count is the lower of two that agree: flagging it is the rule's
    choice, not a cut that could not move."""
    three = (27, 30, 28)
    assert arbitrated_choice(*three) == ("lower", 27)
    cut = {"rule": "arbitrated", "flagged": 27, "chosen": "lower", "counts": _counts(three),
           "close_call": close_call(*three)}
    assert ("loss+margin mixture 27, loss mixture 30: flagged the lower, the two within 20% "
            "of each other") in _cut_row(cut)


def test_scan_summary_table_hides_a_close_call_the_cut_could_not_take() -> None:
    """A close call whose other side is the count the cut flagged (the cut could not
    move to the chosen one) has nothing to say; one that could have flagged more stays."""
    three = (0, 10, 5)  # halfway: the tie keeps the first's 0; the other side is 10
    assert close_call(*three) == 10
    shown = _cut_row({"rule": "arbitrated", "flagged": 0, "chosen": "mixture",
                      "counts": _counts(three), "close_call": 10})
    assert "review on to row 10" in shown
    # 0 / 20 / estimate 11 is 55% of the way: the second's 20 was chosen, the cut stayed
    # at 0, and the other side's count is 0 itself
    three = (0, 20, 11)
    assert close_call(*three) == 0 and arbitrated_choice(*three) == ("loss_mixture", 20)
    stayed = _cut_row({"rule": "arbitrated", "flagged": 0, "chosen": "loss_mixture",
                       "counts": _counts(three), "close_call": 0})
    assert "close call" not in stayed and "flagged 0, the first's count" in stayed


def test_scan_on_identical_images_says_what_it_flagged(tmp_path: Path) -> None:
    """A real scan of 30 identical blank images in three classes with two networks: the
    loss+margin mixture flags none, the loss mixture's count is chosen but the cut cannot
    move, and the summary says the scan flagged none rather than the loss mixture's count."""
    from PIL import Image

    root = tmp_path / "blank"
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16)).save(root / c / f"{i}.png")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["scan", str(root), "--out", str(out), "--epochs", "1", "--width", "8",
              "--batch-size", "16", "--networks", "2", "--device", "cpu"],
        env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    cut = json.loads((out / "summary.json").read_text())["cut"]
    flagged = int(pd.read_csv(out / "scores.csv")["is_noisy"].sum())
    n = cut["counts"]
    assert flagged == cut["flagged"] == n["mixture"] == 0  # the degenerate case
    assert cut["chosen"] == "loss_mixture" and n["loss_mixture"] > 0
    text = " ".join(result.output.split())
    assert f"loss+margin mixture 0, loss mixture {n['loss_mixture']}: flagged 0, the " \
           "first's count" in text
    assert "flagged the second" not in text
