"""Procedural street layouts for the synthetic driving scenes (numpy only).

A scene is a straight street seen from a forward camera, described in the camera optical frame
(x right, y down, z forward, metres; origin at the camera, pitch and roll 0). The road surface is
the plane ``y = cam_height``; sidewalks are raised by the kerb height. Everything else is an
axis-aligned box: vehicles, poles, trees, building blocks, a back row of buildings and a skyline
across the street end at ``z_end`` that bounds every depth (<= ~115 m).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import enum

import numpy as np


class Kind(enum.IntEnum):
    """What a box is; picks its texture, radar cross section and velocity model."""

    CAR = 0
    TRUCK = 1
    POLE = 2
    SIGN = 3
    TRUNK = 4
    CANOPY = 5
    BUILDING = 6
    BACKDROP = 7
    WALL = 8
    SHADOW = 9
    CABIN = 10


VEHICLE_KINDS = (Kind.CAR, Kind.TRUCK)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the camera frame (metres), ``y0 < y1`` (y0 is the top, y down)."""

    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float
    kind: Kind
    color: tuple[float, float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    """Ground-frame velocity (vx, vz) in m/s, camera axes (x right, z forward)."""
    pattern: int = 0
    """Per-object random integer that varies textures (window grids, lights)."""


@dataclass(frozen=True)
class LaneLine:
    """A painted line on the road at lateral position ``x`` (m)."""

    x: float
    style: str  # 'dashed' | 'solid' | 'yellow'


@dataclass
class Scene:
    """Everything the renderer and the sensor models need about one street."""

    cam_height: float
    kerb_height: float
    road_left: float
    road_right: float
    z_end: float
    ego_speed: float
    lane_lines: list[LaneLine]
    boxes: list[Box]
    sun: np.ndarray
    ambient: float
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    road_color: np.ndarray
    sidewalk_color: np.ndarray
    visibility_m: float
    exposure: float
    seed: int = 0
    extras: dict = field(default_factory=dict)


_BUILDING_COLORS = np.array([
    [0.72, 0.66, 0.56], [0.62, 0.34, 0.27], [0.55, 0.55, 0.56], [0.85, 0.84, 0.80],
    [0.42, 0.52, 0.62], [0.78, 0.70, 0.52], [0.48, 0.40, 0.35], [0.66, 0.69, 0.66]])
_CAR_COLORS = np.array([
    [0.90, 0.90, 0.90], [0.08, 0.08, 0.09], [0.50, 0.51, 0.53], [0.70, 0.71, 0.73],
    [0.62, 0.10, 0.09], [0.12, 0.22, 0.48], [0.20, 0.28, 0.22], [0.85, 0.75, 0.20]])


def _pick(rng: np.random.Generator, palette: np.ndarray, jitter: float = 0.06) -> tuple:
    base = palette[rng.integers(len(palette))]
    return tuple(np.clip(base * rng.uniform(1 - jitter, 1 + jitter, 3), 0, 1).tolist())


def _vehicle(rng: np.random.Generator, x_center: float, z0: float, ground: float,
             velocity: tuple[float, float]) -> list[Box]:
    """A car (80 %), van (10 %) or truck / bus (10 %) on the plane y = ground.

    Cars and vans are a body box plus a narrower glass cabin on top; trucks are one box. The
    first box is the body (radar reflector); its z extent is the vehicle's.
    """
    roll = rng.random()
    pattern = int(rng.integers(1 << 30))
    if roll < 0.9:
        van = roll >= 0.8
        w = rng.uniform(1.9, 2.1) if van else rng.uniform(1.7, 1.95)
        h = rng.uniform(1.8, 2.1) if van else rng.uniform(1.4, 1.6)
        length = rng.uniform(4.8, 5.6) if van else rng.uniform(4.0, 4.9)
        color = _pick(rng, _CAR_COLORS)
        x0, x1 = x_center - w / 2, x_center + w / 2
        body_top = ground - h * (0.62 if van else 0.55)
        body = Box(x0, x1, body_top, ground, z0, z0 + length, Kind.CAR, color, velocity,
                   pattern)
        front, rear = (0.12, 0.3) if van else (0.22, 0.28)
        if velocity[1] < 0:  # oncoming: the camera sees the front, whose bonnet is longer
            front, rear = rear, front
        cabin = Box(x0 + 0.1, x1 - 0.1, ground - h, body_top, z0 + length * front,
                    z0 + length * (1 - rear), Kind.CABIN, color, velocity, pattern)
        return [body, cabin]
    w, h, length = rng.uniform(2.4, 2.6), rng.uniform(2.9, 3.6), rng.uniform(7.0, 12.0)
    return [Box(x_center - w / 2, x_center + w / 2, ground - h, ground, z0, z0 + length,
                Kind.TRUCK, _pick(rng, _BUILDING_COLORS, 0.1), velocity, pattern)]


def _lanes(rng: np.random.Generator, scene_boxes: list[Box], lines: list[LaneLine],
           cam_h: float, ego_speed: float, z_end: float) -> tuple[float, float]:
    """Lay out lanes (ego lane centred at x = 0) and their traffic; returns the road edges."""
    n_lanes = int(rng.choice([2, 3, 4], p=[0.45, 0.25, 0.30]))
    lane_w = rng.uniform(3.0, 3.6)
    ego_lane = int(rng.integers(n_lanes))
    offset = rng.uniform(-0.3, 0.3)
    left = -(ego_lane + 0.5) * lane_w + offset
    right_hand = rng.random() < 0.6
    n_oncoming = n_lanes // 2 if rng.random() < 0.8 else 0
    if n_oncoming and ego_lane < n_oncoming and right_hand:
        n_oncoming = ego_lane  # keep the ego car in a forward lane
    if n_oncoming and not right_hand and ego_lane >= n_lanes - n_oncoming:
        n_oncoming = n_lanes - 1 - ego_lane
    centres = [left + (i + 0.5) * lane_w for i in range(n_lanes)]
    for i in range(1, n_lanes):
        split = (right_hand and i == n_oncoming) or (not right_hand and i == n_lanes - n_oncoming)
        lines.append(LaneLine(left + i * lane_w, 'yellow' if split and n_oncoming else 'dashed'))
    for i, xc in enumerate(centres):
        oncoming = (i < n_oncoming) if right_hand else (i >= n_lanes - n_oncoming)
        z = rng.uniform(6.0, 25.0) if i == ego_lane else rng.uniform(-6.0, 15.0)
        while z < z_end - 8:
            if oncoming:
                velocity = (0.0, -rng.uniform(5.0, 14.0))
            elif rng.random() < 0.2:
                velocity = (0.0, 0.0)
            else:
                velocity = (0.0, max(0.0, ego_speed + rng.normal(0.0, 2.5)))
            car = _vehicle(rng, xc + rng.normal(0, 0.25), z, cam_h, velocity)
            if not (i == ego_lane and car[0].z0 < 5.0):
                scene_boxes.extend(car)
            z = car[0].z1 + rng.uniform(4.0, 35.0)
    right = left + n_lanes * lane_w
    # Parking strips with stationary cars along one or both kerbs.
    for side in (-1, 1):
        if rng.random() < 0.45:
            strip = rng.uniform(2.0, 2.5)
            edge = left if side < 0 else right
            xc = edge + side * strip / 2
            z = rng.uniform(-8.0, 6.0)
            while z < z_end - 8:
                if rng.random() < 0.65:
                    car = _vehicle(rng, xc, z, cam_h, (0.0, 0.0))
                    scene_boxes.extend(car)
                    z = car[0].z1 + rng.uniform(0.8, 3.0)
                else:
                    z += rng.uniform(4.0, 12.0)
            if side < 0:
                left -= strip
            else:
                right += strip
    lines.append(LaneLine(left + 0.25, 'solid'))
    lines.append(LaneLine(right - 0.25, 'solid'))
    return left, right


def _street_furniture(rng: np.random.Generator, boxes: list[Box], kerb_x: float, side: int,
                      walk_y: float, z_end: float) -> None:
    """Lamp poles, signs and trees on one sidewalk (side -1 = left, +1 = right)."""
    z = rng.uniform(0.0, 15.0)
    spacing = rng.uniform(15.0, 35.0)
    while z < z_end - 5:
        x = kerb_x + side * rng.uniform(0.4, 0.8)
        w = rng.uniform(0.14, 0.3)
        height = rng.uniform(5.0, 9.0)
        grey = tuple((np.full(3, rng.uniform(0.35, 0.6))).tolist())
        boxes.append(Box(x - w / 2, x + w / 2, walk_y - height, walk_y, z, z + w, Kind.POLE, grey,
                         pattern=int(rng.integers(1 << 30))))
        if rng.random() < 0.7:  # lamp arm over the road
            arm = rng.uniform(1.0, 2.5)
            xa, xb = sorted((x, x - side * arm))
            boxes.append(Box(xa, xb, walk_y - height, walk_y - height + 0.15, z, z + 0.15,
                             Kind.POLE, grey))
        z += spacing * rng.uniform(0.8, 1.2)
    z = rng.uniform(3.0, 20.0)
    while z < z_end - 5:
        if rng.random() < 0.35:
            x = kerb_x + side * rng.uniform(0.3, 0.6)
            plate = rng.uniform(0.5, 0.8)
            top = walk_y - rng.uniform(2.2, 3.0)
            boxes.append(Box(x - 0.04, x + 0.04, top, walk_y, z, z + 0.08, Kind.POLE,
                             (0.5, 0.5, 0.52)))
            color = [(0.8, 0.1, 0.1), (0.1, 0.25, 0.7), (0.9, 0.9, 0.9), (0.95, 0.75, 0.1)]
            boxes.append(Box(x - plate / 2, x + plate / 2, top - plate, top, z - 0.02, z,
                             Kind.SIGN, color[rng.integers(4)]))
        z += rng.uniform(10.0, 30.0)
    if rng.random() < 0.5:
        z = rng.uniform(0.0, 10.0)
        gap = rng.uniform(7.0, 14.0)
        green = (rng.uniform(0.15, 0.3), rng.uniform(0.35, 0.5), rng.uniform(0.12, 0.2))
        while z < z_end - 5:
            x = kerb_x + side * rng.uniform(1.2, 2.0)
            trunk_h = rng.uniform(2.0, 3.2)
            boxes.append(Box(x - 0.15, x + 0.15, walk_y - trunk_h, walk_y, z, z + 0.3, Kind.TRUNK,
                             (0.33, 0.24, 0.16)))
            r = rng.uniform(1.2, 2.2)
            boxes.append(Box(x - r, x + r, walk_y - trunk_h - rng.uniform(2.0, 4.0),
                             walk_y - trunk_h + 0.3, z + 0.15 - r, z + 0.15 + r, Kind.CANOPY,
                             green, pattern=int(rng.integers(1 << 30))))
            z += gap * rng.uniform(0.85, 1.15)


def _frontage(rng: np.random.Generator, boxes: list[Box], walk_edge: float, side: int,
              walk_y: float, z_end: float) -> float:
    """Buildings (or a wall and trees) along one side; returns the back-row lateral position."""
    kind = rng.choice(['buildings', 'open'], p=[0.8, 0.2])
    front = walk_edge + side * rng.uniform(0.0, 3.0)
    if kind == 'open':
        wall_h = rng.uniform(0.8, 2.0)
        xa, xb = sorted((front, front + side * 0.3))
        boxes.append(Box(xa, xb, walk_y - wall_h, walk_y, -10.0, z_end, Kind.WALL,
                         _pick(rng, _BUILDING_COLORS), pattern=int(rng.integers(1 << 30))))
        return front + side * rng.uniform(15.0, 40.0)
    z = -12.0
    while z < z_end:
        length = rng.uniform(8.0, 35.0)
        setback = front + side * rng.uniform(0.0, 4.0) * (rng.random() < 0.5)
        depth = rng.uniform(10.0, 20.0)
        height = rng.uniform(5.0, 32.0)
        xa, xb = sorted((setback, setback + side * depth))
        boxes.append(Box(xa, xb, walk_y - height, walk_y, z, min(z + length, z_end + 2.0),
                         Kind.BUILDING, _pick(rng, _BUILDING_COLORS),
                         pattern=int(rng.integers(1 << 30))))
        z += length + (rng.uniform(2.0, 12.0) if rng.random() < 0.3 else 0.0)
    return front + side * rng.uniform(22.0, 45.0)


def generate_scene(rng: np.random.Generator) -> Scene:
    """Draw one street layout.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.

    Returns:
        A :class:`Scene` in the camera optical frame (metres, m/s).
    """
    cam_h = float(rng.uniform(1.35, 1.75))  # nuScenes CAM_FRONT ~1.51 m; other cars differ
    kerb_h = float(rng.uniform(0.10, 0.18))
    z_end = float(rng.uniform(55.0, 110.0))
    ego_speed = 0.0 if rng.random() < 0.2 else float(rng.uniform(3.0, 15.0))
    boxes: list[Box] = []
    lines: list[LaneLine] = []
    left, right = _lanes(rng, boxes, lines, cam_h, ego_speed, z_end)
    walk_y = cam_h - kerb_h
    for side, kerb in ((-1, left), (1, right)):
        walk = rng.uniform(2.0, 5.0)
        _street_furniture(rng, boxes, kerb, side, walk_y, z_end)
        back = _frontage(rng, boxes, kerb + side * walk, side, walk_y, z_end)
        height = rng.uniform(8.0, 35.0)
        xa, xb = sorted((back, back + side * 30.0))
        boxes.append(Box(xa, xb, walk_y - height, walk_y, -20.0, z_end + 5.0, Kind.BUILDING,
                         _pick(rng, _BUILDING_COLORS), pattern=int(rng.integers(1 << 30))))
    # Skyline across the street end: several blocks of different heights.
    x = -160.0
    while x < 160.0:
        width = rng.uniform(8.0, 40.0)
        height = rng.uniform(6.0, 40.0) if rng.random() < 0.75 else rng.uniform(4.0, 9.0)
        kind = Kind.BACKDROP if height > 9 else Kind.CANOPY
        color = _pick(rng, _BUILDING_COLORS) if kind == Kind.BACKDROP else (0.2, 0.36, 0.17)
        z0 = z_end + rng.uniform(0.0, 4.0)
        boxes.append(Box(x, x + width, walk_y - height, walk_y, z0, z0 + 15.0, kind, color,
                         pattern=int(rng.integers(1 << 30))))
        x += width
    # Contact shadows under vehicles, drawn as dark decals just above the road.
    for box in [b for b in boxes if b.kind in VEHICLE_KINDS]:
        boxes.append(Box(box.x0 - 0.15, box.x1 + 0.15, cam_h - 0.01, cam_h, box.z0 - 0.2,
                         box.z1 + 0.4, Kind.SHADOW, (0.05, 0.05, 0.05)))
    elevation = rng.uniform(0.3, 1.2)
    azimuth = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(elevation) * np.sin(azimuth), -np.sin(elevation),
                    np.cos(elevation) * np.cos(azimuth)])
    overcast = rng.random() < 0.35
    sky_top = np.array([0.62, 0.64, 0.68]) if overcast else np.array([0.30, 0.50, 0.82])
    sky_horizon = np.array([0.80, 0.81, 0.83]) if overcast else np.array([0.74, 0.82, 0.92])
    asphalt = rng.uniform(0.22, 0.5)
    return Scene(
        cam_height=cam_h, kerb_height=kerb_h, road_left=float(left), road_right=float(right),
        z_end=z_end, ego_speed=ego_speed, lane_lines=lines, boxes=boxes, sun=sun,
        ambient=float(rng.uniform(0.55, 0.7) if overcast else rng.uniform(0.35, 0.5)),
        sky_top=sky_top * rng.uniform(0.9, 1.1, 3), sky_horizon=sky_horizon,
        road_color=np.array([asphalt, asphalt, asphalt * rng.uniform(0.98, 1.06)]),
        sidewalk_color=np.full(3, rng.uniform(0.5, 0.68)) * rng.uniform(0.95, 1.05, 3),
        visibility_m=float(rng.uniform(120.0, 400.0) if overcast else rng.uniform(250.0, 700.0)),
        exposure=float(rng.uniform(0.85, 1.15)),
        extras={'cloud_cover': float(rng.uniform(0.0, 1.0)),
                'cloud_phase': tuple(float(v) for v in rng.uniform(0.0, 2 * np.pi, 6)),
                'road_texture': float(rng.uniform(0.06, 0.3))})
