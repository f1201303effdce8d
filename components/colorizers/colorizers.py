"""The paper's colour assignments (Table XV(b)): random distinct colours, or location-aware colours
derived from each entity's centroid (Painter-style)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from esgkit.core import Colorizer, Colormap, EntityMasks
from esgkit.core.errors import ConfigError
from esgkit.layers.painting import paint


class _Palette:
    """A growing sequence of distinct random colours: sequential rejection sampling, so the first
    ``n`` colours do not depend on how many are asked for later."""

    def __init__(self, seed: int, min_distance: float, min_brightness: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.min_d, self.low = float(min_distance), int(min_brightness)
        self.chosen = np.zeros((0, 3), np.float64)

    def first(self, n: int) -> np.ndarray:
        if len(self.chosen) < n:
            grown = np.zeros((max(n, 2 * len(self.chosen)), 3), np.float64)
            grown[: len(self.chosen)] = self.chosen
            count, tries = len(self.chosen), 0
            while count < len(grown):
                c = self.rng.integers(self.low, 256, size=3)
                if count == 0 or np.sqrt(((grown[:count] - c) ** 2).sum(1)).min() >= self.min_d:
                    grown[count] = c
                    count += 1
                    tries = 0
                else:
                    tries += 1
                    if tries > 200:  # too crowded: relax the distance rather than loop forever
                        self.min_d *= 0.8
                        tries = 0
            self.chosen = grown
        out = self.chosen[:n].astype(np.uint8)
        # exact duplicates (after heavy relaxing) would merge two entities: nudge them apart
        _, first = np.unique(out, axis=0, return_index=True)
        for i in sorted(set(range(n)) - set(first.tolist())):
            out[i] = (out[i].astype(int) + 1 + i) % 256
        return out


_PALETTES: dict[tuple[int, float, int], _Palette] = {}


class RandomColorizer(Colorizer):
    """Random distinct colours per entity (the paper's default), reproducible from ``seed``."""

    @dataclass
    class Config:
        seed: int = 0
        min_distance: float = 24.0  # minimum Euclidean RGB distance between any two colours
        min_brightness: int = 40  # keep colours away from the black background

    def __init__(self, config: RandomColorizer.Config) -> None:
        if config.min_distance < 0:
            raise ConfigError("must be >= 0", key="colorizer.min_distance")
        self.config = config

    def colors(self, n: int, seed: int | None = None) -> np.ndarray:
        """The first ``n`` colours of this seed's palette, kept ``min_distance`` apart (relaxed when
        the RGB cube gets too crowded). The palette is generated once per seed and extended on demand,
        so colouring an image does not re-run the rejection sampling."""
        key = (self.config.seed if seed is None else seed, self.config.min_distance, self.config.min_brightness)
        palette = _PALETTES.get(key)
        if palette is None:
            palette = _PALETTES[key] = _Palette(*key)
        return palette.first(n)

    def colorize(self, masks: EntityMasks) -> Colormap:
        return paint(masks, self.colors(len(masks)))


class LocationColorizer(Colorizer):
    """Location-aware colours (Painter-style): hue from the centroid's angle around the image centre,
    value from its distance, so the colour says where the entity is."""

    @dataclass
    class Config:
        saturation: float = 0.9

    def __init__(self, config: LocationColorizer.Config) -> None:
        self.config = config

    def colorize(self, masks: EntityMasks) -> Colormap:
        h, w = masks.image_size
        colors = np.zeros((len(masks), 3), np.uint8)
        for i, m in enumerate(masks.masks):
            ys, xs = np.nonzero(m)
            cy = ys.mean() / max(h - 1, 1) if len(ys) else 0.5
            cx = xs.mean() / max(w - 1, 1) if len(xs) else 0.5
            dx, dy = cx - 0.5, cy - 0.5
            hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
            value = 0.35 + 0.65 * min(1.0, np.hypot(dx, dy) / np.hypot(0.5, 0.5))
            r, g, b = colorsys.hsv_to_rgb(hue, self.config.saturation, value)
            colors[i] = np.round(np.array([r, g, b]) * 255)
        return paint(masks, colors)
