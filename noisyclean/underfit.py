"""Networks that learnt next to nothing: the check after a warm-up (``scan``) or a training
(``train``) that its predictions are worth a table.

A network that has not learnt the images still gives every image a loss, the mixture still
splits the losses in two, and the table still flags and relabels, as confidently as ever.
On a user's 800 photos in 5 classes, a 2-epoch ResNet-18 scan agreed with the given labels
on about a quarter of the images (chance: a fifth), never predicted one class, and
relabelled 45 images, 5 of them rightly. On 120 images in batches of 64, each epoch is a
single step, and a scan of 8 epochs had learnt nothing (it agreed with 34% of the labels,
the most common class being 35%); in batches of 16, 94%.

Two signs, each cheap to see in the predictions:

* the network agrees with the given labels no more often than always answering the most
  common given class would (a network trained on them agrees with far more, even at 50%
  wrong labels: the labels it fits);
* a class that many images are labelled with is almost never predicted
  (:func:`unlearnt_classes`): its images' wrong labels go unfound, and no image is
  relabelled to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A class is "unlearnt" when at least this many images are labelled with it...
MIN_LABELLED = 10
#: ...and the network predicts it for fewer than this share of that many images.
UNLEARNT_SHARE = 0.1


def agreement(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The share of images whose predicted class is their given label."""
    return float((np.asarray(predicted) == np.asarray(labels)).mean())


def majority_share(labels: np.ndarray, num_classes: int) -> float:
    """The share of images labelled with the most common given class: the agreement of a
    network that always answers that class."""
    labels = np.asarray(labels)
    return float(np.bincount(labels, minlength=num_classes).max() / len(labels))


def unlearnt_classes(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> list[int]:
    """The classes that at least :data:`MIN_LABELLED` images are labelled with and that the
    network predicts for fewer than :data:`UNLEARNT_SHARE` of that many images."""
    given = np.bincount(np.asarray(labels), minlength=num_classes)
    guessed = np.bincount(np.asarray(predicted), minlength=num_classes)
    return [k for k in range(num_classes)
            if given[k] >= MIN_LABELLED and guessed[k] < UNLEARNT_SHARE * given[k]]


def _named(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def underfit_warning(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                     whose: str = "the scan's") -> str | None:
    """The warning for a trained network that learnt next to nothing (see the module
    docstring), or None.

    Args:
        probs: its predicted probabilities, one row per image (of several networks, their
            mean).
        labels: the given labels (class indices).
        classes: the class names.
        whose: whose predictions the warning names (``the scan's``, ``the training's``).
    """
    predicted = np.asarray(probs).argmax(1)
    rate = agreement(predicted, labels)
    majority = majority_share(labels, len(classes))
    remedy = ("train it longer (--epochs; on few images a smaller --batch-size also gives "
              "each epoch more steps) or from pretrained weights (--weights), or check that "
              "the classes hold what their names say")
    if rate <= majority:
        return (f"{whose} predictions agree with only {rate:.1%} of the given labels, no "
                f"more than always answering the most common class ({majority:.1%}): the "
                "network has learnt next to nothing, so its flags and suggested labels are "
                f"not to be trusted; {remedy}")
    unlearnt = unlearnt_classes(predicted, labels, len(classes))
    if not unlearnt:
        return None
    given = np.bincount(np.asarray(labels), minlength=len(classes))
    guessed = np.bincount(predicted, minlength=len(classes))
    counts = [f"{classes[k]} (predicted for {guessed[k]:,} image{'' if guessed[k] == 1 else 's'}, "
              f"given to {given[k]:,})" for k in unlearnt]
    which = "that class" if len(unlearnt) == 1 else "those classes"
    return (f"{whose} predictions almost never name {_named(counts)}: the network has not "
            f"learnt {which}, so wrong labels of {which} go unfound and no image is "
            f"relabelled to {'it' if len(unlearnt) == 1 else 'them'}; {remedy}")
