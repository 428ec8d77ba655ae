"""The digits task: real data shipped with scikit-learn, and the reference CNN.

Used by ``mobileprune demo``, the tests, the benchmarks and the notebooks, so
that every number in this repository is measured on the same split and model.
No network access: ``sklearn.datasets.load_digits`` reads a file inside the
scikit-learn package.

Example:

```python
from mobileprune.demo.digits import load_digits_split, build_digits_cnn
data = load_digits_split()
model = build_digits_cnn()
model.fit(data.x_train, data.y_train, epochs=1, verbose=0)
```
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10
INPUT_SHAPE = (8, 8, 1)


@dataclass(frozen=True)
class DigitsSplit:
    """A fixed train/test split of the 8x8 digits, images scaled to [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> DigitsSplit:
    """Load scikit-learn's digits as ``(N, 8, 8, 1)`` float32 images and int labels.

    Args:
        test_fraction: share of the 1,797 images held out, stratified by class.
        seed: seed of the split; the default gives the split every published
            number in this repository uses.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)


def build_digits_cnn(width: float = 1.0, seed: int = 0, compile: bool = True):
    """Build the reference digits CNN (315,146 parameters at ``width=1``).

    Conv 32 (3x3, valid) -> Conv 64 (3x3, same) -> Flatten -> Dense 128 -> Dense 10
    (logits). This is the network the tfmot comparison in BENCHMARKS.md uses.

    Args:
        width: multiplier on the number of channels and hidden units (a dense
            network "of the same shape" as a structurally pruned one).
        seed: seed for the weight initialisers.
        compile: compile with Adam and sparse categorical cross-entropy.
    """
    import keras

    keras.utils.set_random_seed(seed)

    def units(n: int) -> int:
        return max(1, int(round(n * width)))

    model = keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            keras.layers.Conv2D(units(32), 3, activation="relu", name="conv1"),
            keras.layers.Conv2D(units(64), 3, padding="same", activation="relu", name="conv2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(units(128), activation="relu", name="dense1"),
            keras.layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name="digits_cnn",
    )
    if compile:
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return model
