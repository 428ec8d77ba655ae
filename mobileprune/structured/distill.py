"""Recover accuracy after pruning by distilling from the unpruned model (Keras's ``Distiller``).

``distill(student, teacher, x, y)`` fine-tunes ``student`` (typically the
``shrink`` result) with ``keras.distillation.Distiller`` (Keras >= 3.12):
the loss is ``student_loss_weight`` x the labels' loss plus the rest x the
KL divergence between the teacher's and the student's softened logits
(``LogitsDistillation``). It is a thin wrapper: it builds the ``Distiller``,
compiles and fits it, gives the teacher back its ``trainable`` flag (the
``Distiller`` freezes it for good) and returns the ``History``; ``student``
is trained in place. Both models must output logits (no softmax).

Two choices differ from ``Distiller``'s own defaults, both measured on
``benchmarks.distill_recovery`` (small_cifar, 70% of channels removed):

- the distillation loss is given as a ``keras.losses.KLDivergence()``
  *instance*: ``LogitsDistillation``'s default ``"kl_divergence"`` resolves to
  the plain function, which its ``isinstance`` test does not recognise, so
  (Keras 3.12-3.15) it took the KL divergence of the raw scaled *logits*
  instead of the softmax probabilities and without the ``T**2`` factor: a
  loss that went negative after the first epoch (-0.26) and left the student
  16 points below plain fine-tuning at 3 epochs (62.4% vs 78.8%, seed 0).
- the optimizer defaults to a fresh copy of the one ``student`` was compiled
  with (same class and settings, new state), so distilled and plain
  fine-tuning of a compiled model compare at the same learning rate; an
  uncompiled student gets Adam(1e-3).

Example:

```python
import keras
import mobileprune as mp
from mobileprune.demo.digits import build_digits_cnn, load_digits_split
data = load_digits_split()
teacher = build_digits_cnn()
teacher.fit(data.x_train, data.y_train, epochs=3, verbose=0)
masked = keras.models.clone_model(teacher)  # mask a copy: the teacher stays dense
masked.set_weights(teacher.get_weights())
mp.mask_channels(masked, 0.5)
student = mp.shrink(masked)
history = mp.distill(student, teacher, data.x_train, data.y_train, epochs=2, verbose=0)
```
"""

from __future__ import annotations

import keras


def distill(
    student: keras.Model,
    teacher: keras.Model,
    x,
    y=None,
    *,
    epochs: int = 1,
    batch_size: int | None = 32,
    temperature: float = 3.0,
    student_loss_weight: float = 0.5,
    optimizer=None,
    loss=None,
    metrics=("accuracy",),
    **fit_kwargs,
):
    """Fine-tune ``student`` on ``(x, y)`` with ``teacher``'s logits as soft targets.

    Args:
        student: the model to train (in place), e.g. ``mp.shrink(model)``.
        teacher: the reference model (e.g. the model before pruning); frozen
            during the fit, its ``trainable`` flag restored afterwards.
        x: inputs, or a dataset yielding ``(x, y)`` (then ``y`` is ``None``).
        y: integer or one-hot labels.
        epochs: epochs of fine-tuning.
        batch_size: batch size (``None`` for a dataset).
        temperature: softening of both models' logits.
        student_loss_weight: weight of the labels' loss in ``[0, 1]``; the
            distillation loss gets the rest.
        optimizer: default: a fresh copy of ``student``'s compiled optimizer
            (same settings, new state), else Adam(1e-3).
        loss: the labels' loss; default: ``student``'s compiled loss, else
            sparse categorical cross-entropy from logits.
        metrics: metrics on the student's outputs.
        **fit_kwargs: passed to ``Distiller.fit`` (``validation_data``,
            ``callbacks``, ``verbose``...).

    Returns:
        The ``keras.callbacks.History`` of the fit.
    """
    distillation = getattr(keras, "distillation", None)
    if distillation is None:
        raise ImportError(
            f"mobileprune.distill needs keras.distillation (Keras >= 3.12), this is Keras {keras.__version__}; "
            "upgrade with pip install -U 'keras>=3.12'"
        )
    if not 0.0 <= student_loss_weight <= 1.0:
        raise ValueError(f"student_loss_weight must be in [0, 1], got {student_loss_weight}")
    if loss is None:
        loss = getattr(student, "loss", None) or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if optimizer is None:
        optimizer = fresh_optimizer(student)
    was_trainable = teacher.trainable
    distiller = distillation.Distiller(
        teacher=teacher,
        student=student,
        # An instance, not the default "kl_divergence" string (see the module docstring).
        distillation_losses=distillation.LogitsDistillation(temperature=temperature, loss=keras.losses.KLDivergence()),
        student_loss_weight=student_loss_weight,
    )
    try:
        distiller.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=list(metrics),
        )
        return distiller.fit(x, y, epochs=epochs, batch_size=batch_size, **fit_kwargs)
    finally:
        teacher.trainable = was_trainable


def fresh_optimizer(model: keras.Model) -> keras.optimizers.Optimizer:
    """A new optimizer like the one ``model`` was compiled with (no state), else Adam(1e-3)."""
    compiled = getattr(model, "optimizer", None)
    if isinstance(compiled, keras.optimizers.Optimizer):
        return compiled.__class__.from_config(compiled.get_config())
    return keras.optimizers.Adam(1e-3)
