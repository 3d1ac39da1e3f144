"""Exact-depth renderer for :mod:`synthetic_scene` streets (numpy only, vectorised).

With pitch and roll 0, a pixel's ray is ``(du[u], dv[v], 1)`` with ``du = (u - cx) / fx`` and
``dv = (v - cy) / fy``, so the ray parameter *is* the camera-frame depth z. Every surface is an
axis-aligned rectangle, so each face covers an image rectangle whose depth depends on the column
only (x = const faces), the row only (y = const) or on neither (z = const). Faces are z-buffered
one by one on their bounding rectangle; colours are computed only for the pixels that win.
Pixel centres sit at integer coordinates (the geometry.py convention).
"""
from __future__ import annotations

import math

import numpy as np

from xdrcdepth_ros.data.synthetic_scene import Box, Kind, Scene

NEAR_M = 0.3
#: A face's winning pixels: (rgb view of its rectangle, (h, w) mask, in-plane coordinates a, b
#: of the masked pixels, metres).
Hit = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_NOISE_SIZE = 256
_NOISE: np.ndarray | None = None


def _noise() -> np.ndarray:
    """A fixed, tileable smooth value-noise texture in [-1, 1] (same for every scene)."""
    global _NOISE
    if _NOISE is None:
        rng = np.random.default_rng(20251015)
        acc = np.zeros((_NOISE_SIZE, _NOISE_SIZE), dtype=np.float32)
        for octave, amp in ((8, 0.5), (32, 0.3), (128, 0.2)):
            coarse = rng.standard_normal((octave, octave)).astype(np.float32)
            reps = _NOISE_SIZE // octave
            fine = np.repeat(np.repeat(coarse, reps, 0), reps, 1)
            # Box-smooth with wrap-around so the texture tiles without seams.
            for axis in (0, 1):
                fine = sum(np.roll(fine, s, axis) for s in range(-reps // 2, reps // 2 + 1)) \
                    / (reps + 1)
            acc += amp * fine / (np.abs(fine).max() + 1e-6)
        _NOISE = acc / np.abs(acc).max()
    return _NOISE


def _tex(a: np.ndarray, b: np.ndarray, scale: float, offset: int = 0) -> np.ndarray:
    """Sample the noise texture at world coordinates (a, b) metres, ``scale`` texels per metre."""
    ia = (a * scale).astype(np.int32) + offset
    ib = (b * scale).astype(np.int32) + offset * 7
    return _noise()[ia & (_NOISE_SIZE - 1), ib & (_NOISE_SIZE - 1)]


def _hash(*values: np.ndarray) -> np.ndarray:
    """Cheap integer hash in [0, 1) for per-window / per-cell variation."""
    h = np.zeros(np.broadcast(*values).shape, dtype=np.uint32)
    for value in values:
        h = (h ^ np.asarray(value).astype(np.int64).astype(np.uint32)) * np.uint32(2654435761)
        h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFF)).astype(np.float32) / 65536.0


class Rasterizer:
    """Z-buffered renderer of one view.

    Args:
        K: (3, 3) intrinsics (fx, fy, cx, cy used; skew must be 0).
        width: image width, pixels.
        height: image height, pixels.
    """

    def __init__(self, K: np.ndarray, width: int, height: int) -> None:
        K = np.asarray(K, dtype=np.float64)
        self.fx, self.fy, self.cx, self.cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        self.width, self.height = int(width), int(height)
        self.du = ((np.arange(self.width) - self.cx) / self.fx).astype(np.float32)
        self.dv = ((np.arange(self.height) - self.cy) / self.fy).astype(np.float32)
        self.depth = np.full((self.height, self.width), np.inf, dtype=np.float32)
        self.rgb = np.zeros((self.height, self.width, 3), dtype=np.float32)

    # ------------------------------------------------------------------ pixel ranges
    def _cols(self, lo: float, hi: float) -> tuple[int, int]:
        """Columns whose ray slope du lies in [lo, hi]."""
        c0 = max(0, math.ceil(self.cx + self.fx * lo))
        c1 = min(self.width - 1, math.floor(self.cx + self.fx * hi))
        return c0, c1

    def _rows(self, lo: float, hi: float) -> tuple[int, int]:
        r0 = max(0, math.ceil(self.cy + self.fy * lo))
        r1 = min(self.height - 1, math.floor(self.cy + self.fy * hi))
        return r0, r1

    def _commit(self, r0: int, c0: int, t: np.ndarray,
                inside: np.ndarray | None) -> np.ndarray | None:
        zview = self.depth[r0:r0 + t.shape[0], c0:c0 + t.shape[1]]
        win = t < zview
        if inside is not None:
            win &= inside
        if not win.any():
            return None
        zview[win] = t[win]
        return win

    def _hit(self, r0: int, c0: int, win: np.ndarray, a: np.ndarray, b: np.ndarray) -> Hit:
        """A face's winning pixels: (rgb view, mask, a, b) with a, b the in-plane coordinates."""
        view = self.rgb[r0:r0 + win.shape[0], c0:c0 + win.shape[1]]
        return view, win, a, b

    # ------------------------------------------------------------------ faces
    def face_z(self, z: float, xa: float, xb: float, ya: float, yb: float) -> Hit | None:
        """Plane z = const, x in [xa, xb], y in [ya, yb]; hit coordinates (x, y)."""
        if z <= NEAR_M:
            return None
        c0, c1 = self._cols(xa / z, xb / z)
        r0, r1 = self._rows(ya / z, yb / z)
        if c0 > c1 or r0 > r1:
            return None
        t = np.full((r1 - r0 + 1, c1 - c0 + 1), z, dtype=np.float32)
        win = self._commit(r0, c0, t, None)
        if win is None:
            return None
        x = np.broadcast_to(z * self.du[None, c0:c1 + 1], win.shape)[win]
        y = np.broadcast_to(z * self.dv[r0:r1 + 1, None], win.shape)[win]
        return self._hit(r0, c0, win, x, y)

    def face_x(self, x: float, za: float, zb: float, ya: float, yb: float) -> Hit | None:
        """Plane x = const (x != 0), z in [za, zb], y in [ya, yb]; hit coordinates (z, y)."""
        za = max(za, NEAR_M)
        if zb <= za or abs(x) < 1e-6:
            return None
        lo, hi = sorted((x / za, x / zb))
        c0, c1 = self._cols(lo, hi)
        if c0 > c1:
            return None
        with np.errstate(divide='ignore'):
            t_cols = x / self.du[c0:c1 + 1]
        t_cols = np.where(t_cols > 0, t_cols, np.inf).astype(np.float32)
        finite = t_cols[np.isfinite(t_cols)]
        if finite.size == 0:
            return None
        tmin, tmax = float(finite.min()), float(finite.max())
        r0, r1 = self._rows(min(ya / tmin, ya / tmax), max(yb / tmin, yb / tmax))
        if r0 > r1:
            return None
        t = np.broadcast_to(t_cols[None, :], (r1 - r0 + 1, c1 - c0 + 1))
        y = t * self.dv[r0:r1 + 1, None]
        inside = (y >= ya) & (y <= yb) & (t >= za) & (t <= zb)
        win = self._commit(r0, c0, t, inside)
        if win is None:
            return None
        return self._hit(r0, c0, win, t[win], y[win])

    def face_y(self, y: float, xa: float, xb: float, za: float, zb: float) -> Hit | None:
        """Plane y = const (y != 0), x in [xa, xb], z in [za, zb]; hit coordinates (x, z)."""
        za = max(za, NEAR_M)
        if zb <= za or abs(y) < 1e-6:
            return None
        lo, hi = sorted((y / za, y / zb))
        r0, r1 = self._rows(lo, hi)
        if r0 > r1:
            return None
        with np.errstate(divide='ignore'):
            t_rows = y / self.dv[r0:r1 + 1]
        t_rows = np.where(t_rows > 0, t_rows, np.inf).astype(np.float32)
        finite = t_rows[np.isfinite(t_rows)]
        if finite.size == 0:
            return None
        tmin, tmax = float(finite.min()), float(finite.max())
        c0, c1 = self._cols(min(xa / tmin, xa / tmax), max(xb / tmin, xb / tmax))
        if c0 > c1:
            return None
        t = np.broadcast_to(t_rows[:, None], (r1 - r0 + 1, c1 - c0 + 1))
        x = t * self.du[None, c0:c1 + 1]
        inside = (x >= xa) & (x <= xb) & (t >= za) & (t <= zb)
        win = self._commit(r0, c0, t, inside)
        if win is None:
            return None
        return self._hit(r0, c0, win, x[win], t[win])

    def paint(self, hit: Hit | None, color: np.ndarray | float) -> None:
        """Write (n, 3) colours for a face hit's pixels (the z-buffer is already updated)."""
        if hit is not None:
            hit[0][hit[1]] = color


# ---------------------------------------------------------------------- materials


def _lambert(scene: Scene, normal: tuple[float, float, float]) -> float:
    return scene.ambient + (1 - scene.ambient) * max(0.0, float(np.dot(scene.sun, normal)))


def _windows(a: np.ndarray, y: np.ndarray, top: float, pattern: int) -> tuple:
    """Window mask and per-window brightness on a facade; a along the facade, y down (m)."""
    floor_h = 3.0 + (pattern % 7) * 0.1
    spacing = 2.4 + (pattern % 11) * 0.15
    width = spacing * (0.45 + (pattern % 5) * 0.06)
    ka = np.floor(a / spacing)
    ky = np.floor((y - top) / floor_h)
    fa = a / spacing - ka
    fy = (y - top) / floor_h - ky
    mask = (fa < width / spacing) & (fy > 0.3) & (fy < 0.85)
    return mask, _hash(ka, ky, pattern)


_GLASS = np.array([0.09, 0.11, 0.13], dtype=np.float32)


def _cabin_color(box: Box, axis: str, a: np.ndarray, b: np.ndarray, base: np.ndarray,
                 n: int) -> np.ndarray:
    """Car cabin: windscreen / rear window, side windows split by a pillar, painted roof."""
    col = np.tile(base, (n, 1))
    rel = (b - box.y0) / (box.y1 - box.y0)
    if axis == 'z':
        along = (a - box.x0) / (box.x1 - box.x0)
        col[(rel > 0.12) & (along > 0.07) & (along < 0.93)] = _GLASS
    elif axis == 'x':
        along = (a - box.z0) / (box.z1 - box.z0)
        glass = (rel > 0.15) & (rel < 0.92) & (along > 0.06) & (along < 0.94)
        glass &= np.abs(along - 0.5) > 0.03
        col[glass] = _GLASS * 1.2
    return col


def _body_color(box: Box, axis: str, a: np.ndarray, b: np.ndarray, base: np.ndarray,
                n: int) -> np.ndarray:
    """Car body or truck: lights, plate, bumper, wheels; trucks get a cab windscreen."""
    col = np.tile(base, (n, 1))
    rel = (b - box.y0) / (box.y1 - box.y0)  # 0 at the top, 1 at the ground
    truck = box.kind == Kind.TRUCK
    oncoming = box.velocity[1] < 0
    if axis == 'z':
        along = (a - box.x0) / (box.x1 - box.x0)
        if truck and oncoming:
            col[(rel > 0.08) & (rel < 0.4) & (along > 0.06) & (along < 0.94)] = _GLASS
        lights = (rel > 0.12) & (rel < 0.38) if not truck else (rel > 0.7) & (rel < 0.78)
        lights &= (along < 0.17) | (along > 0.83)
        col[lights] = (0.95, 0.93, 0.8) if oncoming else (0.75, 0.05, 0.04)
        plate = (rel > 0.45) & (rel < 0.62) & (along > 0.38) & (along < 0.62)
        if truck:
            plate = (rel > 0.82) & (rel < 0.88) & (along > 0.4) & (along < 0.6)
        col[plate] = (0.85, 0.85, 0.8)
        col[rel > 0.8] *= 0.3
    elif axis == 'x':
        along = a - box.z0
        if truck:
            # The cab faces the camera on oncoming trucks, and is at the far end otherwise.
            cab = along < 2.2 if oncoming else along > (box.z1 - box.z0 - 2.2)
            col[cab & (rel > 0.08) & (rel < 0.35)] = _GLASS
        col[(rel > 0.85)] *= 0.5
        wheel_r = 0.5 if truck else 0.33
        wy = box.y1 - wheel_r
        for wz in (box.z0 + 0.6 + wheel_r, box.z1 - 0.6 - wheel_r):
            col[(a - wz) ** 2 + (b - wy) ** 2 < wheel_r ** 2] = (0.05, 0.05, 0.05)
    else:
        col *= 1.08
    return np.clip(col, 0, 1)


def _box_color(scene: Scene, box: Box, axis: str, a: np.ndarray, b: np.ndarray,
               normal: tuple[float, float, float]) -> np.ndarray:
    """Colour of face points; (a, b) are in-plane coordinates (x|z along, y down, or x, z)."""
    base = np.asarray(box.color, dtype=np.float32)
    shade = _lambert(scene, normal)
    n = a.shape[0]
    kind = box.kind
    if kind in (Kind.BUILDING, Kind.BACKDROP):
        col = np.tile(base, (n, 1)) * (1 + 0.06 * _tex(a, b, 6.0, box.pattern % 97))[:, None]
        if axis != 'y':
            mask, glow = _windows(a, b, box.y0, box.pattern)
            glass = np.stack([0.16 + 0.2 * glow, 0.2 + 0.2 * glow, 0.26 + 0.2 * glow], 1)
            col[mask] = glass[mask]
            ground = b > box.y1 - 3.2
            col[ground & ~mask] *= 0.8
        return col * shade
    if kind == Kind.CABIN:
        return _cabin_color(box, axis, a, b, base, n) * shade
    if kind in (Kind.CAR, Kind.TRUCK):
        return _body_color(box, axis, a, b, base, n) * shade
    if kind in (Kind.CANOPY, Kind.WALL):
        tex = _tex(a * 1.7, b * 1.3, 8.0, box.pattern % 89)
        return np.tile(base, (n, 1)) * (0.8 + 0.35 * tex)[:, None] * shade
    if kind == Kind.SHADOW:
        return np.tile(scene.road_color * 0.35, (n, 1))
    return np.tile(base, (n, 1)) * shade


def _draw_box(r: Rasterizer, scene: Scene, box: Box) -> None:
    """Render the faces of a box that face the camera (at the origin)."""
    if box.z0 > NEAR_M:
        hit = r.face_z(box.z0, box.x0, box.x1, box.y0, box.y1)
        if hit is not None:
            r.paint(hit, _box_color(scene, box, 'z', hit[2], hit[3], (0, 0, -1)))
    for x, normal in ((box.x1, (1, 0, 0)), (box.x0, (-1, 0, 0))):
        if (x == box.x1 and x < 0) or (x == box.x0 and x > 0):
            hit = r.face_x(x, box.z0, box.z1, box.y0, box.y1)
            if hit is not None:
                r.paint(hit, _box_color(scene, box, 'x', hit[2], hit[3], normal))
    if box.y0 > 0:
        hit = r.face_y(box.y0, box.x0, box.x1, box.z0, box.z1)
        if hit is not None:
            r.paint(hit, _box_color(scene, box, 'y', hit[2], hit[3], (0, -1, 0)))


def _draw_ground(r: Rasterizer, scene: Scene) -> None:
    h, walk = scene.cam_height, scene.cam_height - scene.kerb_height
    far = scene.z_end + 25.0
    up = (0.0, -1.0, 0.0)
    ground_shade = _lambert(scene, up)
    hit = r.face_y(h, scene.road_left, scene.road_right, 0.0, far)
    if hit is not None:
        x, z = hit[2], hit[3]
        col = np.tile(scene.road_color, (len(x), 1)).astype(np.float32)
        texture = np.float32(scene.extras.get('road_texture', 0.12))
        col *= (1 + texture * _tex(x, z * 0.5, 5.0, 3)
                + 0.5 * texture * _tex(x * 0.2, z * 0.05, 2.0, 9))[:, None]
        for line in scene.lane_lines:
            on = np.abs(x - line.x) < (0.08 if line.style != 'yellow' else 0.2)
            if line.style == 'dashed':
                on &= np.mod(z + line.x * 3.7, 9.0) < 3.0
            elif line.style == 'yellow':
                on &= np.abs(np.abs(x - line.x) - 0.12) < 0.06
            paint = (0.8, 0.65, 0.15) if line.style == 'yellow' else (0.85, 0.85, 0.83)
            col[on] = paint
        r.paint(hit, col * ground_shade)
    for xa, xb in ((-400.0, scene.road_left), (scene.road_right, 400.0)):
        hit = r.face_y(walk, xa, xb, 0.0, far)
        if hit is not None:
            x, z = hit[2], hit[3]
            col = np.tile(scene.sidewalk_color, (len(x), 1)).astype(np.float32)
            col *= (1 + 0.08 * _tex(x, z, 7.0, 11))[:, None]
            seams = (np.mod(x, 1.2) < 0.04) | (np.mod(z, 1.2) < 0.04)
            col[seams] *= 0.8
            r.paint(hit, col * ground_shade)
    for x, normal in ((scene.road_left, (1, 0, 0)), (scene.road_right, (-1, 0, 0))):
        hit = r.face_x(x, 0.0, far, walk, h)
        if hit is not None:
            r.paint(hit, np.float32(0.72 * _lambert(scene, normal)))


def _cloud_blobs(du: np.ndarray, dv: np.ndarray, phase: tuple[float, ...]) -> np.ndarray:
    """Smooth cloud density in about [-1, 1] at ray slopes (du, dv): three products of sines,
    coarse to fine, with the scene's six phases (radians)."""
    out = np.zeros(du.shape, np.float32)
    for k, (fu, fv, weight) in enumerate(((5.0, 9.0, 0.55), (11.0, 19.0, 0.3), (23.0, 37.0, 0.15))):
        out += np.float32(weight) * (np.sin(fu * du + phase[2 * k])
                                     * np.sin(fv * dv + phase[2 * k + 1])).astype(np.float32)
    return out * np.float32(1.6)


def render(scene: Scene, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Render a scene.

    Args:
        scene: street layout in the camera frame.
        K: (3, 3) intrinsics for this image size.
        width: pixels.
        height: pixels.

    Returns:
        ``(rgb, depth)``: (H, W, 3) float32 linear colour in [0, 1] before exposure and noise,
        and (H, W) float32 camera-frame depth z in metres, 0 where the ray sees sky.
    """
    r = Rasterizer(K, width, height)
    # Near objects first, so far faces mostly fail the depth test before any colour work.
    for box in sorted(scene.boxes, key=lambda b: max(b.z0, 0.0)):
        _draw_box(r, scene, box)
    _draw_ground(r, scene)
    depth = r.depth
    sky = np.isinf(depth)
    depth[sky] = 0.0
    # Aerial perspective: distant surfaces fade towards the horizon colour (sky: fade = 1).
    fade = np.exp(depth * np.float32(-1.0 / scene.visibility_m))
    rows, cols = np.nonzero(sky)
    if len(rows):
        up = np.clip(-r.dv[rows], 0.0, 0.6)[:, None] / 0.6
        gradient = scene.sky_horizon * (1 - up) + scene.sky_top * up
        # Clouds: soft blobs over the ray directions (so they look the same at any image size),
        # blended towards white-grey by the scene's cloud cover.
        cover = np.float32(scene.extras.get('cloud_cover', 0.0))
        blobs = _cloud_blobs(r.du[cols], r.dv[rows], scene.extras.get('cloud_phase', (0.0,) * 6))
        cloud = np.clip((blobs + cover - 0.6) * 1.5, 0.0, 1.0)[:, None] * cover
        white = np.float32(0.9) - 0.25 * up * cover
        r.rgb[rows, cols] = gradient * (1 - cloud) + white * cloud
    haze = scene.sky_horizon.astype(np.float32)
    rgb = r.rgb
    rgb -= haze
    rgb *= fade[..., None]
    rgb += haze
    return rgb, depth
