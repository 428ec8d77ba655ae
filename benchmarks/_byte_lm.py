"""A small byte-level transformer language model trained on the Python standard library's own sources.

Shared by the one-shot pruning benchmarks. The data is text that no one here
wrote and that ships with every Python: the ``.py`` files at the top level of
``sysconfig.get_paths()["stdlib"]``, sorted by name and split into training and
validation *by file* (every tenth file is validation), so validation text is
never seen in training, not even as a neighbouring window.

The model is a pre-norm decoder built from core Keras layers only (``Embedding``,
``MultiHeadAttention`` with a causal mask, ``LayerNormalization``, ``Dense``) plus
one tiny learned position table, so that every projection is a layer the
pruners know. Training takes minutes on two CPU cores; the trained weights are
cached under ``benchmarks/.cache/`` (git-ignored), keyed by the configuration
and a hash of the data, so later runs reuse them.

Example:

```python
from benchmarks._byte_lm import LMConfig, load_corpus, trained_lm, perplexity

config = LMConfig()
corpus = load_corpus(config)
model, training = trained_lm(config, corpus)   # trains once, then loads the cache
print(perplexity(model, corpus.validation_windows))
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
VOCABULARY = 256  # bytes


@dataclass(frozen=True)
class LMConfig:
    """Shape of the model and of its training run."""

    num_layers: int = 4
    hidden: int = 192
    heads: int = 3
    ffn: int = 768
    sequence: int = 128
    batch: int = 32
    steps: int = 800
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    seed: int = 0
    validation_every: int = 10  # every n-th file (sorted by name) is validation
    validation_windows: int = 256  # non-overlapping validation windows scored

    def key(self, data_hash: str) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True) + data_hash
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Corpus:
    """Training bytes, validation windows and the provenance of both."""

    train: np.ndarray  # uint8 stream of the training files
    validation: np.ndarray  # uint8 stream of the validation files
    validation_windows: np.ndarray  # (n, sequence + 1) int32
    train_files: int
    validation_files: int
    stdlib: str
    sha256: str

    def describe(self) -> dict[str, Any]:
        return {
            "source": f"top-level *.py files of {self.stdlib}, sorted by name",
            "train_files": self.train_files,
            "validation_files": self.validation_files,
            "train_bytes": int(self.train.size),
            "validation_bytes": int(self.validation.size),
            "validation_windows": int(len(self.validation_windows)),
            "sha256": self.sha256,
        }


def load_corpus(config: LMConfig) -> Corpus:
    """Read the stdlib sources and split them by file.

    Files are joined with a NUL byte between them (it never occurs in source),
    which marks file boundaries to the model.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    if len(files) < 2 * config.validation_every:
        raise RuntimeError(f"found only {len(files)} .py files under {stdlib}; the benchmark needs a full stdlib")
    train_parts, validation_parts = [], []
    digest = hashlib.sha256()
    for index, path in enumerate(files):
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + data)
        (validation_parts if index % config.validation_every == 0 else train_parts).append(data)
    train = np.frombuffer(b"\0".join(train_parts), dtype=np.uint8)
    validation = np.frombuffer(b"\0".join(validation_parts), dtype=np.uint8)
    length = config.sequence + 1
    count = min(config.validation_windows, validation.size // length)
    windows = validation[: count * length].reshape(count, length).astype("int32")
    return Corpus(
        train, validation, windows, len(train_parts), len(validation_parts), str(stdlib), digest.hexdigest()[:16]
    )


def random_windows(stream: np.ndarray, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` windows of ``length`` bytes at random offsets, as int32."""
    starts = rng.integers(0, stream.size - length, size=count)
    return np.stack([stream[start : start + length] for start in starts]).astype("int32")


def calibration_sequences(corpus: Corpus, config: LMConfig, count: int = 128, seed: int = 1) -> np.ndarray:
    """``count`` random training windows of ``config.sequence`` bytes (model inputs only)."""
    rng = np.random.default_rng(seed)
    return random_windows(corpus.train, count, config.sequence, rng)


def build_byte_lm(config: LMConfig):
    """Build the uncompiled decoder: byte ids ``(batch, sequence)`` -> logits ``(batch, sequence, 256)``.

    Layer names: ``block{i}_attention`` (a ``MultiHeadAttention``),
    ``block{i}_ffn_up`` / ``block{i}_ffn_down`` (the FFN ``Dense`` pair),
    ``token_embedding`` and ``lm_head``.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    ids = keras.Input((config.sequence,), dtype="int32", name="ids")
    x = keras.layers.Embedding(VOCABULARY, config.hidden, name="token_embedding")(ids)
    x = PositionEmbedding(config.sequence, name="position_embedding")(x)
    for i in range(config.num_layers):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm1")(x)
        h = keras.layers.MultiHeadAttention(config.heads, config.hidden // config.heads, name=f"block{i}_attention")(
            h, h, use_causal_mask=True
        )
        x = keras.layers.Add(name=f"block{i}_residual1")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm2")(x)
        h = keras.layers.Dense(config.ffn, activation="gelu", name=f"block{i}_ffn_up")(h)
        h = keras.layers.Dense(config.hidden, name=f"block{i}_ffn_down")(h)
        x = keras.layers.Add(name=f"block{i}_residual2")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = keras.layers.Dense(VOCABULARY, name="lm_head")(x)
    return keras.Model(ids, logits, name="byte_lm")


def _position_embedding_class():
    import keras

    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned ``(sequence, hidden)`` table to its input."""

        def __init__(self, sequence: int, **kwargs):
            super().__init__(**kwargs)
            self.sequence = sequence

        def build(self, input_shape):
            self.table = self.add_weight(
                shape=(self.sequence, input_shape[-1]),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="table",
            )

        def call(self, x):
            return x + self.table[: keras.ops.shape(x)[1]]

        def get_config(self):
            return {**super().get_config(), "sequence": self.sequence}

    return PositionEmbedding


def PositionEmbedding(sequence: int, **kwargs):  # noqa: N802 - used like a layer class
    """A learned position table added to the token embeddings (built lazily so Keras loads on use)."""
    return _position_embedding_class()(sequence, **kwargs)


def perplexity(model, windows: np.ndarray, batch: int = 32) -> float:
    """exp(mean next-byte cross-entropy) over every position of ``windows`` ``(n, sequence + 1)``."""
    import keras

    total, count = 0.0, 0
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        logits = model(chunk[:, :-1], training=False)
        losses = keras.ops.sparse_categorical_crossentropy(chunk[:, 1:], logits, from_logits=True)
        total += float(keras.ops.convert_to_numpy(keras.ops.sum(losses)))
        count += losses.shape[0] * losses.shape[1]
    return math.exp(total / count)


def _train(config: LMConfig, corpus: Corpus, log_every: int = 100) -> tuple[Any, dict[str, Any]]:
    import keras

    model = build_byte_lm(config)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        config.steps - config.warmup_steps,
        alpha=0.05,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    losses = []
    for step in range(config.steps):
        batch = random_windows(corpus.train, config.batch, config.sequence + 1, rng)
        losses.append(float(model.train_on_batch(batch[:, :-1], batch[:, 1:])))
        if (step + 1) % log_every == 0:
            print(
                f"  step {step + 1}/{config.steps}: loss {np.mean(losses[-log_every:]):.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    seconds = time.perf_counter() - start
    return model, {
        "steps": config.steps,
        "batch": config.batch,
        "tokens_seen": config.steps * config.batch * config.sequence,
        "optimizer": f"AdamW(weight_decay=0.01, clipnorm=1.0), lr {config.learning_rate} "
        f"with {config.warmup_steps} warm-up steps then cosine decay to 5%",
        "final_train_loss": float(np.mean(losses[-log_every:])),
        "train_seconds": round(seconds, 1),
    }


def trained_lm(config: LMConfig, corpus: Corpus) -> tuple[Any, dict[str, Any]]:
    """Return the trained model and a description of how it was trained.

    Trains on first use and caches the weights in ``benchmarks/.cache/``; a cached
    run is reused only when the configuration and the data hash both match.
    """
    key = config.key(corpus.sha256)
    weights = CACHE_DIR / f"byte_lm_{key}.weights.h5"
    record = CACHE_DIR / f"byte_lm_{key}.json"
    if weights.is_file() and record.is_file():
        model = build_byte_lm(config)
        model.load_weights(weights)
        return model, {**json.loads(record.read_text()), "cached": True}
    print(f"training the byte LM ({config.steps} steps; cached afterwards in {CACHE_DIR})", flush=True)
    model, training = _train(config, corpus)
    training.update(
        config=dataclasses.asdict(config),
        parameters=int(model.count_params()),
        corpus=corpus.describe(),
        dense_validation_perplexity=perplexity(model, corpus.validation_windows),
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    model.save_weights(weights)
    record.write_text(json.dumps(training, indent=2) + "\n")
    return model, {**training, "cached": False}


def fresh_copy(config: LMConfig, corpus: Corpus):
    """A new model holding the cached trained weights (one-shot pruning edits a model in place)."""
    model, _ = trained_lm(config, corpus)
    return model


if __name__ == "__main__":
    # Train (or load) the model and print how it was trained: ``python -m benchmarks._byte_lm``.
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _config = LMConfig()
    _corpus = load_corpus(_config)
    _model, _training = trained_lm(_config, _corpus)
    print(json.dumps(_training, indent=2))
    print(f"validation perplexity: {perplexity(_model, _corpus.validation_windows):.3f}")
