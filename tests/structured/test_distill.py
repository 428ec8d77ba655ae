"""mp.distill: fine-tuning a shrunk model from the unpruned one with keras.distillation.Distiller."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

import mobileprune as mp  # noqa: E402
from mobileprune.demo.digits import build_digits_cnn, load_digits_split  # noqa: E402


@pytest.fixture(scope="module")
def data():
    split = load_digits_split()
    return split.x_train[:128], split.y_train[:128]


def _teacher_and_student(x, y):
    teacher = build_digits_cnn(width=0.25)
    teacher.fit(x, y, epochs=1, batch_size=32, verbose=0)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    mp.mask_channels(student, 0.5)
    return teacher, mp.shrink(student)


def test_distill_trains_the_student_toward_the_teacher_and_leaves_the_teacher_alone(data):
    x, y = data
    teacher, student = _teacher_and_student(x, y)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    history = mp.distill(student, teacher, x, y, epochs=2, batch_size=32, verbose=0)
    assert set(history.history) >= {"student_loss", "distillation_loss", "total_loss"}
    losses = history.history["distillation_loss"]
    assert losses[-1] < losses[0]
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(teacher_weights, teacher.get_weights()))
    assert teacher.trainable  # the Distiller froze it; distill gives the flag back


def test_distill_rejects_a_bad_loss_weight(data):
    x, y = data
    teacher, student = build_digits_cnn(width=0.25), build_digits_cnn(width=0.125)
    with pytest.raises(ValueError, match=r"student_loss_weight must be in \[0, 1\]"):
        mp.distill(student, teacher, x, y, student_loss_weight=2.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@pytest.mark.tensorflow_only  # the loss is backend-independent Keras code; the TF leg covers it
def test_distillation_loss_is_the_kl_of_softened_probabilities_times_t_squared(data):
    # Keras's default "kl_divergence" string took the KL of raw logits (negative after one epoch).
    x, y = data
    teacher, student = _teacher_and_student(x, y)
    temperature = 2.0
    expected_student, expected_teacher = (np.asarray(m.predict(x, verbose=0)) / temperature for m in (student, teacher))
    p, q = _softmax(expected_teacher), _softmax(expected_student)
    expected = temperature**2 * np.mean(np.sum(p * np.log(p / q), axis=-1))
    history = mp.distill(
        student,
        teacher,
        x,
        y,
        batch_size=len(x),
        temperature=temperature,
        student_loss_weight=0.0,
        optimizer=keras.optimizers.SGD(0.0),
        verbose=0,
    )
    assert history.history["distillation_loss"][0] == pytest.approx(expected, rel=1e-3, abs=1e-5)


def test_fresh_optimizer_copies_the_compiled_settings_without_state():
    from mobileprune.structured.distill import fresh_optimizer

    model = build_digits_cnn(width=0.125, compile=False)
    assert isinstance(fresh_optimizer(model), keras.optimizers.Adam)  # uncompiled: Adam(1e-3)
    compiled = keras.optimizers.SGD(0.05, momentum=0.5)
    model.compile(optimizer=compiled, loss="sparse_categorical_crossentropy")
    fresh = fresh_optimizer(model)
    assert isinstance(fresh, keras.optimizers.SGD) and fresh is not compiled
    assert float(fresh.learning_rate) == pytest.approx(0.05) and fresh.momentum == 0.5
