"""Tiny models and a synthetic latency table (cost = a known function of the shapes) for the latency tests."""

from __future__ import annotations

import itertools

import keras
import numpy as np

from mobileprune.latency.sites import config_key, model_sites
from mobileprune.latency.table import LatencyTable, site_configs


def tiny_cnn(width: int = 16, seed: int = 0) -> keras.Model:
    """conv(3->width) -> ReLU -> conv(width->width) -> GAP -> Dense(4): two groups, few configurations."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", name="a")(inputs)
    x = keras.layers.ReLU(name="a_relu")(x)
    x = keras.layers.Conv2D(width, 3, padding="same", name="b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def config_cost(config: dict) -> float:
    """A made-up latency: input elements times the first layer's output channels, in microseconds."""
    first = config["layers"][0]["config"]
    inputs = sum(int(np.prod(shape)) for shape in config["inputs"])
    return 1e-6 * inputs * first.get("filters", first.get("units", 1))


def synthetic_table(model, step: int = 4, levels: int = 4, overhead_ms: float = 0.001, cost=config_cost):
    """A table of ``model``'s grid filled with ``cost(config)`` instead of measurements."""
    table = LatencyTable("float32", 1, overhead_ms=overhead_ms, step=step, levels=levels)
    for site in model_sites(model):
        for config in site_configs(site, "float32", 1, step, levels):
            table.entries[config_key(config)] = {"ms": cost(config), "what": "synthetic"}
    return table


def all_width_assignments(groups: dict[str, int], step: int):
    """Every assignment of multiples of ``step`` (and the full size) to the groups."""
    choices = [sorted({*range(step, size, step), size}) for size in groups.values()]
    for combination in itertools.product(*choices):
        yield dict(zip(groups, combination))
