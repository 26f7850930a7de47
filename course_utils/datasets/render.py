"""The SynthCity renderer: one street scene drawn procedurally from a random generator.

A scene is rendered with a pinhole camera looking down a straight street: a world point
``(X, Y, Z)`` (metres: X to the right, Y up from the ground, Z along the street) lands
on column ``x_v + f X / Z`` and row ``y_h + f (cam_h - Y) / Z``. Everything in the
scene is a patch of a plane (the ground, the two facades, the far skyline, the faces of
a car, a person or a sign facing the camera), and every patch is drawn by evaluating
that formula backwards on a grid of pixel coordinates: no per-pixel Python loops.
Because objects live in metres, perspective comes for free: a car 60 m away is a few
pixels wide near the horizon, and a pole 10 cm thick is 1-3 pixels wide at 128 px.

Colours are drawn per scene from overlapping distributions (grey cars on grey roads,
grey overcast skies over grey buildings, shadows, lighting, texture noise), so a model
has to use shape and context rather than the colour of a pixel.

The committed encoder, the model zoo and the notebooks' numbers were made from these
exact pixels: any change here, even a reordering of random draws, changes them all
(``tests/test_datasets.py`` holds a hash of reference scenes).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .._checks import check_hw

# Class ids drawn by the renderer: indices into ``synthcity.CLASSES`` (a test checks the
# names line up).
NUM_CLASSES = 9
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, POLE, SIGN, CAR, PERSON = range(NUM_CLASSES)

MIN_SIZE = 16    # below this a scene has no room for a horizon, a road and a car
MAX_SIZE = 2048

__all__ = ["Scene", "scene_rng", "render_scene", "MIN_SIZE", "MAX_SIZE"]


def render_scene(size, rng: np.random.Generator):
    """One scene from ``rng``: ``(image float32 (3, H, W) in [0, 1], labels uint8 (H, W))``.

    ``size`` is an int (square) or ``(H, W)``, each in [MIN_SIZE, MAX_SIZE].
    """
    h, w = check_hw("size", size, MIN_SIZE, MAX_SIZE)
    return Scene(h, w, rng).render()


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``generate(n, size, seed)``: independent of ``n``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


@functools.lru_cache(maxsize=64)
def _lerp_weights(n_out: int, n_in: int):
    """Linear interpolation of ``n_in`` control points spread over ``n_out`` pixels:
    output ``k`` is ``(1 - t[k]) * p[i[k]] + t[k] * p[i[k] + 1]``."""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    i = np.minimum(np.floor(pos).astype(np.intp), n_in - 2)
    return i, (pos - i).astype(np.float32)


def _smooth_noise(rng, h, w, gh, gw):
    """Noise that varies over ``gh x gw`` cells: cheap low frequencies (light, clouds, wear).

    Written as two gathers rather than a matrix product: tiny BLAS calls can stall for
    milliseconds when other processes hold the cores.
    """
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    i, t = _lerp_weights(h, gh)
    rows = grid[i] * (1.0 - t)[:, None] + grid[i + 1] * t[:, None]          # (h, gw)
    j, u = _lerp_weights(w, gw)
    return rows[:, j] * (1.0 - u) + rows[:, j + 1] * u


def _span(a: float, b: float, n: int) -> tuple[int, int]:
    """Pixels whose centres ``k + 0.5`` lie in ``[a, b)``, clipped to ``[0, n)``."""
    lo = max(0, math.ceil(a - 0.5))
    hi = min(n, math.ceil(b - 0.5))
    return lo, hi


def _between(rng, a, b):
    """Uniform in [a, b]; the midpoint when the interval is empty (a narrow sidewalk)."""
    return rng.uniform(a, b) if b > a else 0.5 * (a + b)


def _jitter(rng, colour, amount):
    # Plain Python on three numbers: np.clip's overhead would dominate at this size.
    noise = rng.uniform(-amount, amount, 3).tolist()
    return np.array([min(1.0, max(0.0, c + e)) for c, e in zip(colour, noise)], dtype=np.float32)


def _pick(rng, table, amount):
    return _jitter(rng, table[rng.integers(len(table))], amount).astype(np.float32)


BUILDING_COLOURS = [(0.76, 0.68, 0.55), (0.58, 0.30, 0.24), (0.55, 0.55, 0.55), (0.85, 0.84, 0.80),
                    (0.80, 0.72, 0.46), (0.45, 0.50, 0.60), (0.32, 0.31, 0.33), (0.66, 0.60, 0.66),
                    (0.50, 0.45, 0.38)]
VEGETATION_COLOURS = [(0.22, 0.42, 0.14), (0.33, 0.48, 0.19), (0.17, 0.30, 0.13), (0.48, 0.45, 0.20),
                      (0.30, 0.38, 0.22)]
CAR_COLOURS = [(0.90, 0.90, 0.90), (0.10, 0.10, 0.12), (0.48, 0.48, 0.50), (0.70, 0.72, 0.75),
               (0.62, 0.10, 0.10), (0.15, 0.25, 0.55), (0.20, 0.35, 0.25), (0.85, 0.75, 0.20),
               (0.35, 0.30, 0.28)]
SKIN_COLOURS = [(0.90, 0.72, 0.60), (0.75, 0.55, 0.42), (0.50, 0.35, 0.25), (0.35, 0.24, 0.18)]
SKIES = [((0.30, 0.50, 0.85), (0.70, 0.80, 0.92)),   # clear
         ((0.62, 0.65, 0.70), (0.78, 0.80, 0.82)),   # overcast
         ((0.45, 0.60, 0.80), (0.85, 0.85, 0.85)),   # hazy
         ((0.35, 0.40, 0.65), (0.92, 0.70, 0.50))]   # dusk
# Per-class amplitude of the fine texture noise: foliage is speckled, sky is smooth.
TEXTURE = np.array([0.04, 0.03, 0.03, 0.12, 0.01, 0.02, 0.02, 0.02, 0.03], dtype=np.float32)


NOISE_PAD = 32


@functools.lru_cache(maxsize=4)
def _noise_tile(h: int, w: int) -> np.ndarray:
    """A fixed block of Gaussian noise; each scene takes a random window of it.

    Drawing fresh normals for every pixel costs more than the rest of a scene; a shifted,
    sign-flipped window of a fixed block looks the same and is deterministic too.
    """
    return np.random.default_rng(0x5C1C).standard_normal((4, h + NOISE_PAD, w + NOISE_PAD),
                                                          dtype=np.float32)


class Scene:
    """One scene's camera, street layout and canvas; :meth:`render` draws it.

    The canvas is channel-first ``(3, H, W)``: painting a region is then one
    ``np.copyto(..., where=mask)`` with a 2-D mask, which NumPy does much faster than
    masked assignment into an ``(H, W, 3)`` array.
    """

    def __init__(self, h: int, w: int, rng: np.random.Generator):
        self.H, self.W, self.rng = h, w, rng
        # Focal length tied to the height: a wider image sees more of the street sideways.
        self.f = float(h * rng.uniform(1.25, 1.7))
        self.yh = float(h * rng.uniform(0.34, 0.5))          # horizon row
        self.xv = float(w * rng.uniform(0.3, 0.7))           # vanishing point column
        self.cam_h = float(rng.uniform(1.3, 1.8))
        width = rng.uniform(5.0, 10.0)
        frac = rng.uniform(0.15, 0.85)
        self.road = (float(-frac * width), float((1.0 - frac) * width))  # camera at X = 0
        self.walk = (float(rng.uniform(2.5, 5.5)), float(rng.uniform(2.5, 5.5)))
        verge = np.where(rng.random(2) < 0.4, rng.uniform(0.5, 4.0, 2), 0.0)
        self.facade = (self.road[0] - self.walk[0] - float(verge[0]),
                       self.road[1] + self.walk[1] + float(verge[1]))
        self.z_end = float(rng.uniform(50.0, 160.0))
        self.rows = np.arange(h, dtype=np.float32) + 0.5
        self.cols = np.arange(w, dtype=np.float32) + 0.5
        self.img = np.empty((3, h, w), dtype=np.float32)
        self.lab = np.empty((h, w), dtype=np.uint8)
        self.ground_r0 = h

    # -- projection and painting -----------------------------------------------------------
    def col(self, x, z):
        return self.xv + self.f * x / z

    def row(self, y, z):
        return self.yh + self.f * (self.cam_h - y) / z

    def frontal(self, z, x0, x1, y0, y1):
        """Box of a camera-facing rectangle at depth ``z``, with the world X (1, w) and Y (h, 1) of its pixels."""
        c0, c1 = _span(self.col(x0, z), self.col(x1, z), self.W)
        r0, r1 = _span(self.row(y1, z), self.row(y0, z), self.H)
        if c0 >= c1 or r0 >= r1:
            return None
        s = z / self.f
        xs = (self.cols[c0:c1] - self.xv) * s
        ys = self.cam_h - (self.rows[r0:r1] - self.yh) * s
        return (r0, r1, c0, c1), xs[None, :], ys[:, None]

    def side(self, xs, z0, z1, y0, y1):
        """Box and mask of a patch of the vertical plane ``X = xs`` (a car's flank)."""
        if abs(xs) < 1e-3:
            return None
        a, b = sorted((self.col(xs, z0), self.col(xs, z1)))
        c0, c1 = _span(a, b, self.W)
        if c0 >= c1:
            return None
        dx = self.cols[c0:c1] - self.xv
        dx = np.where(np.abs(dx) < 1e-3, np.float32(1e-3), dx)
        z = self.f * xs / dx
        ok = (z >= z0) & (z <= z1)
        if not ok.any():
            return None
        z = np.where(ok, z, np.float32(z1))
        top, bottom = self.row(y1, z), self.row(y0, z)
        r0, r1 = _span(float(top[ok].min()), float(bottom[ok].max()), self.H)
        if r0 >= r1:
            return None
        rr = self.rows[r0:r1, None]
        return (r0, r1, c0, c1), (rr >= top) & (rr < bottom) & ok

    def top(self, yp, x0, x1, z0, z1):
        """Box and mask of a patch of the horizontal plane ``Y = yp`` seen from above (a bonnet)."""
        if yp >= self.cam_h - 1e-3:
            return None
        r0, r1 = _span(self.row(yp, z1), self.row(yp, z0), self.H)
        if r0 >= r1:
            return None
        z = self.f * (self.cam_h - yp) / (self.rows[r0:r1] - self.yh)
        a = self.col(x0, z)[:, None]
        b = self.col(x1, z)[:, None]
        c0, c1 = _span(float(a.min()), float(b.max()), self.W)
        if c0 >= c1:
            return None
        cc = self.cols[None, c0:c1]
        return (r0, r1, c0, c1), (cc >= a) & (cc < b)

    def paint(self, box, mask, cls, colour):
        """Give the pixels of ``mask`` (broadcast over ``box``) class ``cls`` and ``colour``.

        ``colour`` is an RGB triple or a ``(3, h, w)`` array of per-pixel colours.
        """
        r0, r1, c0, c1 = box
        img, lab = self.img[:, r0:r1, c0:c1], self.lab[r0:r1, c0:c1]
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim == 1:
            colour = colour[:, None, None]
        if mask is None:
            img[...] = colour
            lab[...] = cls
        else:
            np.copyto(img, colour, where=mask)
            np.copyto(lab, np.uint8(cls), where=mask)

    # -- the scene ---------------------------------------------------------------------------
    def render(self):
        self.gain = self.rng.uniform(0.7, 1.15)
        self.draw_sky()
        self.draw_ground()
        self.make_facades()
        self.draw_facades()
        self.draw_skyline()
        self.draw_shadow()
        objects = self.place_objects()
        objects.sort(key=lambda o: -o[0])                 # painter's algorithm: far to near
        for _, draw, args in objects:
            draw(*args)
        return self.finish()

    def draw_sky(self):
        rng, h, w = self.rng, self.H, self.W
        zen, hor = SKIES[rng.integers(len(SKIES))]
        zen, hor = _jitter(rng, zen, 0.06), _jitter(rng, hor, 0.06)
        self.horizon_colour = hor
        t = np.clip(self.rows / max(self.yh, 1.0), 0.0, 1.0) ** 0.7
        self.img[...] = zen[:, None, None] + (hor - zen)[:, None, None] * t[None, :, None]
        cover = rng.uniform(0.0, 1.0)
        if cover > 0.4:
            clouds = _smooth_noise(rng, h, w, 5, 9) + 0.6 * _smooth_noise(rng, h, w, 9, 17)
            amount = np.clip((clouds - 1.3 + cover) * 1.5, 0.0, 0.75)
            cloud = _jitter(rng, (0.9, 0.9, 0.9), 0.08)
            self.img += (cloud[:, None, None] - self.img) * amount
        self.lab[...] = SKY

    def draw_ground(self):
        rng = self.rng
        r0 = max(0, math.ceil(self.yh - 0.5 + 1e-6))
        if r0 >= self.H:
            return
        self.ground_r0 = r0
        z = self.f * self.cam_h / (self.rows[r0:] - self.yh)                # (h',)
        x = (self.cols - self.xv)[None, :] * (z / self.f)[:, None]           # (h', W)
        zz = z[:, None]
        left, right = self.road
        lw, rw = self.walk
        on_road = (x >= left) & (x <= right)
        on_walk = ((x >= left - lw) & (x < left)) | ((x > right) & (x <= right + rw))
        lab = np.full(x.shape, VEGETATION, dtype=np.uint8)                   # verge: grass
        lab[on_walk] = SIDEWALK
        lab[on_road] = ROAD

        road_c = _jitter(rng, (rng.uniform(0.22, 0.52),) * 3, 0.03)
        # Paving is usually lighter than asphalt, but the ranges overlap under shadows.
        walk_c = (_jitter(rng, road_c + rng.uniform(0.08, 0.3), 0.04) if rng.random() < 0.7
                  else _pick(rng, [(0.62, 0.45, 0.40), (0.70, 0.65, 0.55)], 0.06))
        verge_c = _pick(rng, VEGETATION_COLOURS + [(0.45, 0.40, 0.28)], 0.05)
        table = np.zeros((3, NUM_CLASSES), dtype=np.float32)
        table[:, ROAD], table[:, SIDEWALK], table[:, VEGETATION] = road_c, walk_c, verge_c
        img = np.take(table, lab, axis=1)                                    # (3, h', W)
        # Paving tiles and a bright curb: texture that belongs to the sidewalk.
        tile = rng.uniform(0.4, 0.9)
        parity = (np.floor(x * (1.0 / tile)) + np.floor(zz * (1.0 / tile))).astype(np.int32) & 1
        curb = (np.abs(x - left) < 0.15) | (np.abs(x - right) < 0.15)
        tex = np.where(curb, np.float32(rng.uniform(0.05, 0.15)),
                       parity.astype(np.float32) * np.float32(rng.uniform(-0.06, 0.06)))
        # Patches of wear and repair: low-frequency shading on road and sidewalk.
        tex = np.where(on_walk, tex, 0.0) + _smooth_noise(rng, x.shape[0], self.W, 4, 6) * rng.uniform(0.02, 0.08)
        img += tex
        # Lane markings: dashed paint, still road.
        lanes = max(1, int((right - left) // 3.2))
        centres = left + (right - left) * np.arange(1, lanes) / lanes
        if centres.size:
            near = np.zeros(x.shape, dtype=bool)
            for c in centres:
                near |= np.abs(x - c) < 0.08
            period = rng.uniform(6.0, 12.0)
            dash = ((zz + rng.uniform(0, period)) % period) < period * rng.uniform(0.3, 0.6)
            paint = _jitter(rng, (0.85, 0.85, 0.8) if rng.random() < 0.8 else (0.85, 0.7, 0.2), 0.05)
            np.copyto(img, paint[:, None, None], where=near & dash & on_road)
        self.img[:, r0:] = img
        self.lab[r0:] = lab
        self.ground_x = x

    def make_facades(self):
        """Blocks along each side of the street: buildings, and gaps of vegetation."""
        rng = self.rng
        self.sides = []
        for _ in range(2):
            starts, heights, kinds, colours, windows = [], [], [], [], []
            z = rng.uniform(-2.0, 6.0)
            while z < self.z_end:
                starts.append(z)
                if rng.random() < 0.78:
                    kinds.append(BUILDING)
                    heights.append(rng.uniform(6.0, 28.0))
                    colours.append(_pick(rng, BUILDING_COLOURS, 0.08))
                    floor = rng.uniform(2.8, 3.6)
                    spacing = rng.uniform(1.6, 3.5)
                    # floor height, window spacing, window height, window width, reflection
                    windows.append((floor, spacing, rng.uniform(0.35, 0.7) * floor,
                                    rng.uniform(0.3, 0.7) * spacing, rng.uniform(0.0, 0.5)))
                    z += rng.uniform(12.0, 45.0)
                else:
                    kinds.append(VEGETATION)
                    heights.append(rng.uniform(1.0, 7.0))
                    colours.append(_pick(rng, VEGETATION_COLOURS, 0.06))
                    windows.append((1.0, 1.0, 0.0, 0.0, 0.0))
                    z += rng.uniform(4.0, 20.0)
            self.sides.append((np.array(starts, np.float32), np.array(heights, np.float32),
                               np.array(kinds, np.uint8), np.array(colours, np.float32),
                               np.array(windows, np.float32)))

    def draw_facades(self):
        rng, W = self.rng, self.W
        dx = self.cols - self.xv
        left = dx < 0
        dx = np.where(np.abs(dx) < 1e-3, np.float32(1e-3), dx)
        z = self.f * np.where(left, np.float32(self.facade[0]), np.float32(self.facade[1])) / dx
        height = np.empty(W, dtype=np.float32)
        kind = np.empty(W, dtype=np.uint8)
        colour = np.empty((W, 3), dtype=np.float32)
        win = np.empty((W, 5), dtype=np.float32)
        start = np.empty(W, dtype=np.float32)
        for s, cols in ((0, left), (1, ~left)):
            starts, heights, kinds, colours, windows = self.sides[s]
            i = np.clip(np.searchsorted(starts, z[cols], "right") - 1, 0, len(starts) - 1)
            height[cols], kind[cols] = heights[i], kinds[i]
            colour[cols], win[cols], start[cols] = colours[i], windows[i], starts[i]
        visible = (z > 0) & (z < self.z_end) & (z >= start)
        # Hedges and trees in the gaps have a lumpy top rather than a straight edge.
        lumps = np.sin(z * rng.uniform(0.8, 2.0) + rng.uniform(0, 6.3)) * rng.uniform(0.2, 1.0)
        height = np.where(kind == VEGETATION, np.maximum(height + lumps, 0.5), height)
        rr = self.rows[:, None]
        mask = (rr >= self.row(height, z)) & (rr < self.row(0.0, z)) & visible
        # Facades facing the sun are brighter than those facing away.
        light = np.where(left, np.float32(rng.uniform(0.7, 1.1)), np.float32(rng.uniform(0.7, 1.1)))
        np.copyto(self.img, (colour * light[:, None]).T[:, None, :], where=mask)
        np.copyto(self.lab, kind[None, :], where=mask)
        # Windows: a grid in facade coordinates (along the street, up the wall), so they
        # shrink and crowd towards the vanishing point by themselves.
        floor, spacing, wh, ww, reflect = win.T
        y = self.cam_h - (rr - self.yh) * (z / self.f)                       # (H, W)
        along = z - start
        along = along - spacing * np.floor(along / spacing)
        in_floor = y - floor * np.floor(y / floor)
        columns = (along < ww) & (kind == BUILDING)
        in_win = (in_floor < wh) & (y > floor * 0.9) & (y < height - 0.6) & columns & mask
        glass = _jitter(rng, (0.15, 0.18, 0.22), 0.08)
        glass = glass[None, :] + reflect[:, None] * (self.horizon_colour - glass)[None, :]
        np.copyto(self.img, glass.T[:, None, :], where=in_win)
        # Ground floors: shop fronts or a plinth in a darker tone.
        plinth = (y < floor * 0.9) & (kind == BUILDING) & mask
        np.multiply(self.img, np.float32(rng.uniform(0.55, 0.95)), out=self.img, where=plinth)

    def draw_skyline(self):
        """The far end of the street: a frontal row of blocks at ``z_end``."""
        rng = self.rng
        x = (self.cols - self.xv) * (self.z_end / self.f)
        inside = (x > self.facade[0]) & (x < self.facade[1])
        if not inside.any():
            return
        cuts = np.sort(rng.uniform(self.facade[0], self.facade[1], rng.integers(1, 4)))
        k = len(cuts) + 1
        heights = rng.uniform(4.0, 40.0, k).astype(np.float32)
        kinds = np.where(rng.random(k) < 0.75, BUILDING, VEGETATION).astype(np.uint8)
        colours = np.stack([_pick(rng, BUILDING_COLOURS if kd == BUILDING else VEGETATION_COLOURS, 0.08)
                            for kd in kinds]) * np.float32(rng.uniform(0.75, 1.0))
        i = np.searchsorted(cuts, x)
        rr = self.rows[:, None]
        mask = (rr >= self.row(heights[i], self.z_end)) & (rr < self.row(0.0, self.z_end)) & inside
        np.copyto(self.img, colours[i].T[:, None, :], where=mask)
        np.copyto(self.lab, kinds[i][None, :], where=mask)

    def draw_shadow(self):
        """Buildings on the sun's side cast a band of shadow across the ground."""
        rng = self.rng
        if rng.random() < 0.65 or self.ground_r0 >= self.H:
            return
        r0 = self.ground_r0
        z = self.f * self.cam_h / (self.rows[r0:] - self.yh)
        s = int(rng.integers(2))
        starts, heights, kinds, _, _ = self.sides[s]
        i = np.clip(np.searchsorted(starts, z, "right") - 1, 0, len(starts) - 1)
        reach = heights[i] * np.float32(rng.uniform(0.2, 0.8))                # per row
        x = self.ground_x
        dist = (x - self.facade[0]) if s == 0 else (self.facade[1] - x)
        shadow = (dist < reach[:, None]) & (self.lab[r0:] != BUILDING)
        view = self.img[:, r0:]
        np.multiply(view, np.float32(rng.uniform(0.55, 0.8)), out=view, where=shadow)

    # -- objects -------------------------------------------------------------------------
    def place_objects(self):
        rng = self.rng
        left, right = self.road
        objects, cars = [], []
        for _ in range(rng.integers(0, 8)):
            w = rng.uniform(1.65, 2.0)
            if rng.random() < 0.35:                      # parked along a curb
                xc = left + w / 2 + 0.2 if rng.random() < 0.5 else right - w / 2 - 0.2
            else:                                        # driving in a lane
                xc = _between(rng, left + w / 2 + 0.3, right - w / 2 - 0.3)
            z0 = 4.0 + rng.exponential(18.0)
            if z0 > self.z_end - 5 or any(abs(xc - a) < 2.0 and abs(z0 - b) < 5.5 for a, b in cars):
                continue
            cars.append((xc, z0))
            objects.append((z0, self.draw_car, (xc, z0, w)))
        for _ in range(rng.integers(0, 11)):
            if rng.random() < 0.15:                      # crossing the road
                xp = rng.uniform(left, right)
            elif rng.random() < 0.5:
                xp = _between(rng, left - self.walk[0] + 0.3, left - 0.3)
            else:
                xp = _between(rng, right + 0.3, right + self.walk[1] - 0.3)
            zp = 2.5 + rng.exponential(8.0)
            if zp < min(35.0, self.z_end - 3):
                objects.append((zp, self.draw_person, (xp, zp)))
        for _ in range(rng.integers(2, 10)):
            on_left = rng.random() < 0.5
            xp = left - rng.uniform(0.3, 0.7) if on_left else right + rng.uniform(0.3, 0.7)
            zp = 6.0 + rng.exponential(15.0)
            if zp < self.z_end - 3:
                objects.append((zp, self.draw_pole, (xp, zp, on_left)))
        for _ in range(rng.integers(0, 6)):
            on_left = rng.random() < 0.5
            xt = (_between(rng, self.facade[0] + 0.8, left - 0.8) if on_left
                  else _between(rng, right + 0.8, self.facade[1] - 0.8))
            zt = 5.0 + rng.exponential(18.0)
            if zt < self.z_end - 5:
                objects.append((zt, self.draw_tree, (xt, zt)))
        return objects

    def draw_car(self, xc, z0, w):
        rng = self.rng
        length = rng.uniform(3.9, 5.0)
        hb = rng.uniform(0.85, 1.1)                                       # body height
        hc = rng.uniform(0.4, 0.6) if rng.random() < 0.85 else rng.uniform(0.9, 1.1)  # cabin; vans
        body = _pick(rng, CAR_COLOURS, 0.05)
        glass = _jitter(rng, (0.12, 0.14, 0.17), 0.05)
        tyre = np.array((0.05, 0.05, 0.05), np.float32)
        x0, x1, z1 = xc - w / 2, xc + w / 2, z0 + length
        cz0, cz1 = (z0 + 0.9, z1 - 1.1) if hc < 0.8 else (z0 + 0.2, z1 - 0.3)
        # The flank facing the camera (none when the car is straight ahead).
        xs = x0 if x0 > 0 else (x1 if x1 < 0 else None)
        if xs is not None:
            parts = [((z0, z1, 0.25, hb), body * rng.uniform(0.55, 0.8)), ((cz0, cz1, hb, hb + hc), glass),
                     ((z0 + 0.6, z0 + 1.3, 0.0, 0.55), tyre), ((z1 - 1.3, z1 - 0.6, 0.0, 0.55), tyre)]
            for args, colour in parts:
                p = self.side(xs, *args)
                if p:
                    self.paint(p[0], p[1], CAR, colour)
        p = self.top(hb, x0, x1, z0, z1)
        if p:
            self.paint(p[0], p[1], CAR, np.clip(body * 1.1, 0, 1))
        p = self.top(hb + hc, x0 + 0.15, x1 - 0.15, cz0, cz1)
        if p:
            self.paint(p[0], p[1], CAR, body)
        # The cabin's rear: a window framed by pillars of body colour.
        p = self.frontal(cz0, x0 + 0.15, x1 - 0.15, hb, hb + hc)
        if p:
            box, xx, yy = p
            self.paint(box, None, CAR, body)
            inner = (np.abs(xx - xc) < w / 2 - 0.3) & (yy < hb + hc - 0.08) & (yy > hb + 0.05)
            self.paint(box, inner, CAR, glass)
        # The road under the car is in its shadow (still road).
        p = self.frontal(z0, x0, x1, 0.0, 0.25)
        if p:
            r0, r1, c0, c1 = p[0]
            self.img[:, r0:r1, c0:c1] *= np.float32(0.35)
        # Rear (or front) face with its lights, then the tyres below it.
        p = self.frontal(z0, x0, x1, 0.25, hb)
        if p:
            box, xx, yy = p
            self.paint(box, None, CAR, body)
            lamp = (np.abs(np.abs(xx - xc) - (w / 2 - 0.22)) < 0.14) & (np.abs(yy - hb + 0.25) < 0.09)
            light = (0.75, 0.08, 0.05) if rng.random() < 0.6 else (0.95, 0.92, 0.75)
            self.paint(box, lamp, CAR, light)
        p = self.frontal(z0 + 0.05, x0 + 0.05, x1 - 0.05, 0.0, 0.3)
        if p:
            box, xx, _ = p
            self.paint(box, np.abs(xx - xc) > w / 2 - 0.35, CAR, tyre)

    def draw_person(self, xp, zp):
        rng = self.rng
        h = rng.uniform(1.6, 1.95)
        p = self.frontal(zp, xp - 0.3 * h, xp + 0.3 * h, 0.0, h)
        if not p:
            return
        box, xx, yy = p
        u, v = (xx - xp) / h, yy / h                   # body coordinates, 1 = height
        rh = 0.065
        head = u * u + (v - (1.0 - rh)) ** 2 < rh * rh
        torso = (np.abs(u) < rng.uniform(0.1, 0.14)) & (v > 0.47) & (v < 1.0 - 1.8 * rh)
        spread = rng.uniform(0.02, 0.09)
        legs = ((np.abs(u - spread) < 0.045) | (np.abs(u + spread) < 0.045)) & (v <= 0.5)
        swing = rng.uniform(-0.05, 0.05)
        arms = (np.abs(np.abs(u) - 0.15 - swing * (0.8 - v)) < 0.035) & (v > 0.45) & (v < 0.82)
        self.paint(box, legs, PERSON, _jitter(rng, (rng.uniform(0.05, 0.6),) * 3, 0.1))
        self.paint(box, torso | arms, PERSON, rng.uniform(0.05, 0.9, 3))
        self.paint(box, head, PERSON, _pick(rng, SKIN_COLOURS, 0.04))
        if rng.random() < 0.3:                          # a bag
            bag = (np.abs(u - 0.2 * np.sign(swing)) < 0.07) & (np.abs(v - 0.45) < 0.07)
            self.paint(box, bag, PERSON, rng.uniform(0.05, 0.6, 3))

    def _thin(self, centre, half, n):
        """Pixels within ``half`` of ``centre``, at least one: a camera blurs thin things wider."""
        half = max(0.5, half)
        return max(0, math.ceil(centre - half - 0.5)), min(n, math.floor(centre + half - 0.5) + 1)

    def draw_pole(self, xp, zp, on_left):
        rng = self.rng
        height = rng.uniform(3.5, 8.0)
        width = rng.uniform(0.08, 0.14)
        colour = (_jitter(rng, (rng.uniform(0.2, 0.62),) * 3, 0.05) if rng.random() < 0.8
                  else _jitter(rng, (0.15, 0.25, 0.2), 0.05))
        c0, c1 = self._thin(self.col(xp, zp), self.f * width / (2 * zp), self.W)
        r0, r1 = _span(self.row(height, zp), self.row(0.0, zp), self.H)
        if c0 < c1 and r0 < r1:
            self.paint((r0, r1, c0, c1), None, POLE, colour)
        if rng.random() < 0.75:
            self.draw_sign(xp, zp - 0.05, rng.uniform(1.9, min(3.2, height - 0.3)))
        else:                                           # a street lamp's arm over the road
            reach = rng.uniform(0.8, 2.0) * (1 if on_left else -1)
            c0, c1 = _span(*sorted((self.col(xp, zp), self.col(xp + reach, zp))), self.W)
            r0, r1 = self._thin(self.row(height - 0.07, zp), self.f * 0.07 / zp, self.H)
            if c0 < c1 and r0 < r1:
                self.paint((r0, r1, c0, c1), None, POLE, colour)

    SIGN_COLOURS = [((0.8, 0.1, 0.1), (0.95, 0.95, 0.95)), ((0.95, 0.95, 0.95), (0.1, 0.3, 0.7)),
                    ((0.1, 0.1, 0.1), (0.9, 0.75, 0.1)), ((0.9, 0.9, 0.9), (0.1, 0.45, 0.25)),
                    ((0.55, 0.55, 0.55), (0.6, 0.6, 0.6))]   # (border, face); last: seen from behind

    def draw_sign(self, xs, zs, yc):
        rng = self.rng
        r = rng.uniform(0.4, 0.65)
        p = self.frontal(zs, xs - r, xs + r, yc - r, yc + r)
        if not p:
            return
        box, xx, yy = p
        u, v = (xx - xs) / r, (yy - yc) / r              # in [-1, 1]
        # A "radius" whose level sets are the sign's outline: < 1 inside, < 0.72 the face.
        shape = rng.integers(4)
        if shape == 0:
            dist = np.sqrt(u * u + v * v)                # round
        elif shape == 1:
            dist = np.maximum(np.abs(u), np.abs(v))      # square
        elif shape == 2:
            dist = np.abs(u) + np.abs(v)                 # diamond
        else:
            dist = np.maximum(-v / 0.6, v + 1.7 * np.abs(u))   # triangle, apex up
        border, face = self.SIGN_COLOURS[rng.integers(len(self.SIGN_COLOURS))]
        self.paint(box, dist < 1.0, SIGN, _jitter(rng, border, 0.05))
        self.paint(box, dist < 0.72, SIGN, _jitter(rng, face, 0.05))

    def draw_tree(self, xt, zt):
        rng = self.rng
        radius = rng.uniform(1.5, 3.2)
        cy = rng.uniform(1.5, 3.5) + radius * 0.8
        p = self.frontal(zt, xt - 1.3 * radius, xt + 1.3 * radius, 0.0, cy + 1.3 * radius)
        if not p:
            return
        box, xx, yy = p
        trunk = (np.abs(xx - xt) < rng.uniform(0.1, 0.2)) & (yy < cy)
        self.paint(box, trunk, VEGETATION, _jitter(rng, (0.3, 0.22, 0.15), 0.05))
        dx, dy = xx - xt, (yy - cy) / 0.9
        angle = np.arctan2(dy, dx)
        edge = radius * (1.0 + 0.12 * np.sin(7 * angle + rng.uniform(0, 6.3))
                         + 0.08 * np.sin(3 * angle + rng.uniform(0, 6.3)))
        crown = dx * dx + dy * dy < edge * edge
        # Lit from above: the crown darkens towards its bottom.
        shading = 0.75 + 0.25 * np.clip(dy / radius, -1, 1)
        base = _pick(rng, VEGETATION_COLOURS, 0.06)
        self.paint(box, crown, VEGETATION, base[:, None, None] * shading[None])

    def finish(self):
        rng, h, w, img = self.rng, self.H, self.W, self.img
        oy, ox = rng.integers(0, NOISE_PAD + 1, 2)
        noise = _noise_tile(h, w)[:, oy:oy + h, ox:ox + w]
        # Texture: fine noise whose strength depends on the class.
        amp = np.take(TEXTURE, self.lab) * np.float32(rng.uniform(0.6, 1.4) * rng.choice((-1, 1)))
        img += amp * noise[0]
        # Lighting: a global gain and colour cast, plus slow illumination changes.
        cast = (self.gain * rng.uniform(0.88, 1.12, 3)).astype(np.float32)
        light = 1.0 + np.float32(rng.uniform(0.05, 0.2)) * _smooth_noise(rng, h, w, 3, 4)
        img *= cast[:, None, None] * light
        img += noise[1 + rng.permutation(3)] * np.float32(rng.uniform(0.005, 0.03))
        np.clip(img, 0.0, 1.0, out=img)
        return img, self.lab
