"""Findings-conditioned procedural chest radiograph renderer (PA view).

No real chest X-rays are available, so every labelled report is paired with an image drawn here from
its findings. Each finding must stay visible at 64x64 as well as at 128x128, so features are sized a
little larger than life (ribs, fracture gaps, nodules and pleural lines are each at least about one to
three pixels wide at 64 px).

Coordinates
-----------
Geometry is in normalised image coordinates (x, y) in [-1, 1]^2: x grows to the image right and y grows
downward (row order); pixel (row i, column j) has its centre at x = -1 + (j + 0.5) * 2 / size.
The film is a PA view, so the patient's RIGHT is on the image LEFT (x < 0); the heart, aortic knob and
gastric bubble bulge to the image right. Anatomy is laid out in patient coordinates (u, v) that a small
rotation and shift (`Anatomy.rotation`, `shift_x`, `shift_y`) map onto (x, y). For one lung, `side` is
-1 (patient right, image left) or +1 (patient left, image right), and q = side * u is the distance
lateral from the midline. Shapes are signed-distance fields with one-pixel linear edges (analytic
anti-aliasing), and thin curves are splatted and blurred by a width in normalised units, so the
same patient looks the same at any `size`.

Intensity is dense = bright: an attenuation map A sums soft tissue, mediastinum/abdomen, bone and
fluid, and aerated lung subtracts; the film is I = 1 - exp(-contrast * A), windowed, offset by the
brightness and gamma-corrected; metal is then composited as white (it saturates the detector) and
quantum noise added. Air outside the body is black. Written by hand with numpy/scipy: no maintained
library (MONAI included) renders findings-conditioned radiographs.

Findings (laterality and position are drawn from the image's random stream)
---------------------------------------------------------------------------
- cardiomegaly: cardiothoracic ratio 0.56-0.68 (normal patients draw 0.36-0.46).
- effusion: one or both bases filled with homogeneous fluid whose meniscus rises along the lateral
  wall; the costophrenic angle is blunted and the hemidiaphragm silhouette disappears.
- pneumothorax: one lung collapsed toward its hilum and base; a thin bright visceral pleural line
  with darker, marking-free air between it and the apex / lateral chest wall.
- consolidation: dense, nearly homogeneous lobar or segmental airspace opacity in one lung, with a
  sharp fissure-like border, optionally with dark air bronchograms.
- atelectasis: one or two plate-like bands at a lung base, often with volume loss (that
  hemidiaphragm elevated, the mediastinum shifted toward it).
- edema: bilateral perihilar "bat-wing" haze, blurred vessels, short horizontal Kerley B lines at
  the lateral bases.
- nodule_mass: one to three small round well-defined nodules, or one larger mass.
- opacity: two to four ill-defined, mottled, hazy patches (fainter and softer than consolidation).
- support_devices: one or more of endotracheal tube, central venous line, pacemaker box with leads,
  sternotomy wires, nasogastric tube (thin, sharp, near-saturated white).
- fracture: two to four adjacent posterior ribs broken along one line over a lung: a gap in each rib
  band with the lateral fragments stepped up or down.

Speed on one core (numpy 1.26, scipy 1.17, OMP_NUM_THREADS=1, best of 3 on a shared 2-core machine),
per image for a normal chest / up to 3 random findings / all 10 findings:
64x64: 2.2 / 3.4 / 4.8 ms; 128x128: 5.0 / 5.2 / 9.9 ms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from domains.medical.findings import PATHOLOGIES, check_findings

__all__ = ["Anatomy", "sample_anatomy", "landmarks", "render_chest_xray", "render_batch"]

# Attenuation of each tissue layer (arbitrary units, A in I = 1 - exp(-contrast * A)).
SOFT = 0.8  # chest-wall soft tissue along the midline; thinner toward the flanks
CORE = 1.2  # mediastinum, heart and abdomen: everything inside the rib cage that is not lung
AIR = 1.35  # removed by fully aerated lung
RIB, CLAVICLE, SPINE = 0.3, 0.42, 0.18
# Window on 1 - exp(-A): below BLACK_LEVEL is black (air outside the body); tissue never reaches
# WHITE_LEVEL, which leaves the top of the range to metal.
BLACK_LEVEL, WHITE_LEVEL = 0.3, 1.02


# ----------------------------------------------------------------------------- shapes and fields


def _inside(sdf: np.ndarray, width: float) -> np.ndarray:
    """1 inside (sdf < 0), 0 outside, with a linear edge `width` wide: analytic anti-aliasing."""
    return np.clip(0.5 - sdf / width, 0.0, 1.0)


def _ellipse_sdf(x, y, cx, cy, ax, ay):
    """Approximate signed distance to an axis-aligned ellipse (value / gradient, exact on the curve)."""
    dx, dy = (x - cx) / ax, (y - cy) / ay
    rho = np.sqrt(dx * dx + dy * dy) + 1e-6
    grad = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2) + 1e-6
    return rho * (rho - 1.0) / grad


def _box_sdf(x, y, cx, cy, hx, hy, radius=0.0):
    """Signed distance to a rectangle with rounded corners (half-sizes include the rounding)."""
    qx = np.abs(x - cx) - (hx - radius)
    qy = np.abs(y - cy) - (hy - radius)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - radius


def _segment_distance(x, y, p0, p1):
    """Distance from every point to the segment p0-p1."""
    ex, ey = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * ex + (y - p0[1]) * ey) / (ex * ex + ey * ey + 1e-12), 0.0, 1.0)
    return np.sqrt((x - p0[0] - t * ex) ** 2 + (y - p0[1] - t * ey) ** 2)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    """Quadratic Bezier curve through control points, (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


@dataclass(frozen=True)
class _Frame:
    """The pixel grid seen in patient coordinates: u, v are (size, size) float32."""

    size: int
    px: float  # one pixel in normalised units
    u: np.ndarray
    v: np.ndarray
    cos: float
    sin: float
    shift: tuple[float, float]

    @classmethod
    def build(cls, size: int, a: Anatomy) -> _Frame:
        c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
        x, y = c[None, :] - np.float32(a.shift_x), c[:, None] - np.float32(a.shift_y)
        cos, sin = float(np.cos(a.rotation)), float(np.sin(a.rotation))
        u = (np.float32(cos) * x + np.float32(sin) * y).astype(np.float32)
        v = (np.float32(-sin) * x + np.float32(cos) * y).astype(np.float32)
        return cls(size, 2.0 / size, u, v, cos, sin, (a.shift_x, a.shift_y))

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Patient coordinates (..., 2) -> normalised image coordinates (..., 2)."""
        u, v = uv[..., 0], uv[..., 1]
        return np.stack([self.cos * u - self.sin * v + self.shift[0], self.sin * u + self.cos * v + self.shift[1]], -1)

    def mottle(self, rng: np.random.Generator, scale: float) -> np.ndarray:
        """Smooth random texture in [0, 1] with blobs about `scale` wide (normalised units)."""
        noise = rng.standard_normal((self.size, self.size), dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, max(scale / self.px, 0.5), mode="reflect", truncate=3.0)
        return np.clip(0.5 + 0.25 * noise / (noise.std() + 1e-6), 0.0, 1.0)

    def stroke(self, starts: np.ndarray, ends: np.ndarray, weights: np.ndarray, width: float) -> np.ndarray:
        """Draw segments (K, 2) -> (K, 2) in patient coordinates as lines of Gaussian profile.

        Points are splatted bilinearly every ~0.4 px and blurred, which is far cheaper than a distance
        field per segment; the peak across a straight line equals its weight. Returns (size, size).
        """
        size = self.size
        canvas = np.zeros(size * size, dtype=np.float64)
        if len(starts) == 0:
            return canvas.reshape(size, size).astype(np.float32)
        ds = 0.4 * self.px
        lengths = np.linalg.norm(ends - starts, axis=1)
        counts = np.maximum(np.ceil(lengths / ds).astype(int), 1)
        seg = np.repeat(np.arange(len(starts)), counts)
        t = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 0.5) / counts[seg]
        points = starts[seg] + t[:, None] * (ends - starts)[seg]
        mass = weights[seg] * lengths[seg] / counts[seg] / self.px  # line density per pixel of length
        pix = (self.to_image(points) + 1.0) * (size / 2.0) - 0.5
        base = np.floor(pix).astype(int)
        frac = pix - base
        for dc, dr in ((0, 0), (1, 0), (0, 1), (1, 1)):
            col, row = base[:, 0] + dc, base[:, 1] + dr
            w = mass * (frac[:, 0] if dc else 1 - frac[:, 0]) * (frac[:, 1] if dr else 1 - frac[:, 1])
            ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
            canvas += np.bincount(row[ok] * size + col[ok], w[ok], minlength=size * size)
        sigma = max(width / self.px, 0.5)
        image = ndimage.gaussian_filter(canvas.reshape(size, size), sigma, mode="constant", truncate=3.0)
        # Bilinear splatting adds variance 1/6 px^2; normalise so a straight line peaks at its weight.
        return (image * np.sqrt(2 * np.pi * (sigma**2 + 1 / 6))).astype(np.float32)


def _polyline_segments(points: np.ndarray, weight: float):
    """A polyline (n, 2) as (starts, ends, weights) for `_Frame.stroke`."""
    points = np.asarray(points, dtype=np.float64)
    return points[:-1], points[1:], np.full(len(points) - 1, weight)


def _concat_segments(parts):
    if not parts:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    return tuple(np.concatenate(column) for column in zip(*parts))


# ----------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class Anatomy:
    """One random patient and exposure. Lengths are normalised units (the image spans 2); y / v down.

    thorax_half_width: inner rib cage half-width at its widest (lung lateral edges), 0.66-0.78.
    apex_y: height of the lung apices.
    right_dome_y, left_dome_y: tops of the hemidiaphragm domes; the right (image left) is higher.
    costophrenic_depth: drop of each diaphragm from its dome top to the lateral costophrenic angle.
    heart_ratio: cardiothoracic ratio, heart width / (2 * thorax_half_width); normal < 0.5.
    heart_height: vertical semi-axis of the cardiac ellipse (its lower half hides in the abdomen).
    mediastinum_half_width: half-width of the superior mediastinum (medial lung edges).
    mediastinum_shift: lateral offset of trachea, mediastinum and heart (+ = toward image right).
    rib_spacing: vertical distance between posterior ribs; rib bands are half a spacing thick.
    rib_curvature: how far a posterior rib falls from the spine to the lateral chest wall.
    rib_phase: vertical offset of the rib cage, in rib spacings.
    clavicle_y: height of the clavicles' medial ends; clavicle_angle: their lateral rise (radians).
    soft_tissue: chest-wall thickness lateral to the ribs.
    rotation, shift_x, shift_y: patient position on the film (radians; normalised units).
    contrast, brightness, gamma: exposure; noise: std of the quantum noise added to the film.
    """

    thorax_half_width: float
    apex_y: float
    right_dome_y: float
    left_dome_y: float
    costophrenic_depth: float
    heart_ratio: float
    heart_height: float
    mediastinum_half_width: float
    mediastinum_shift: float
    rib_spacing: float
    rib_curvature: float
    rib_phase: float
    clavicle_y: float
    clavicle_angle: float
    soft_tissue: float
    rotation: float
    shift_x: float
    shift_y: float
    contrast: float
    brightness: float
    gamma: float
    noise: float


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw a normal adult patient and exposure (cardiothoracic ratio 0.36-0.46)."""
    right_dome = rng.uniform(0.20, 0.30)
    apex = rng.uniform(-0.72, -0.62)
    return Anatomy(
        thorax_half_width=rng.uniform(0.66, 0.78),
        apex_y=apex,
        right_dome_y=right_dome,
        left_dome_y=right_dome + rng.uniform(0.02, 0.07),
        costophrenic_depth=rng.uniform(0.15, 0.22),
        heart_ratio=rng.uniform(0.36, 0.46),
        heart_height=rng.uniform(0.4, 0.46),
        mediastinum_half_width=rng.uniform(0.09, 0.12),
        mediastinum_shift=rng.uniform(-0.015, 0.015),
        rib_spacing=rng.uniform(0.145, 0.165),
        rib_curvature=rng.uniform(0.25, 0.38),
        rib_phase=rng.uniform(0.0, 1.0),
        clavicle_y=apex + rng.uniform(-0.02, 0.06),
        clavicle_angle=rng.uniform(0.05, 0.25),
        soft_tissue=rng.uniform(0.06, 0.15),
        rotation=rng.uniform(-0.05, 0.05),
        shift_x=rng.uniform(-0.04, 0.04),
        shift_y=rng.uniform(-0.04, 0.04),
        contrast=rng.uniform(0.85, 1.2),
        brightness=rng.uniform(-0.05, 0.05),
        gamma=rng.uniform(0.8, 1.25),
        noise=rng.uniform(0.005, 0.03),
    )


@dataclass(frozen=True)
class _Lung:
    """Shape of one lung in (q, v): q is lateral distance from the midline on its side."""

    side: int
    q_medial: float  # medial edge (superior mediastinum)
    q_center: float  # centre of the ellipse that forms the apex and lateral wall
    half_q: float
    half_v: float
    dome: float  # dome top; the ellipse is widest here and the wall is vertical below it
    q_dome: float
    dome_curvature: float
    hilum: tuple[float, float]  # (u, v) in patient coordinates
    costophrenic: tuple[float, float]


def _lung(a: Anatomy, side: int) -> _Lung:
    width = a.thorax_half_width
    dome = a.right_dome_y if side < 0 else a.left_dome_y
    q_medial = a.mediastinum_half_width + side * a.mediastinum_shift  # the shift is in u
    q_center, q_dome = 0.42 * width, 0.5 * width
    hilum_v = dome - (0.40 if side < 0 else 0.46)  # the left hilum sits higher
    return _Lung(
        side=side,
        q_medial=q_medial,
        q_center=q_center,
        half_q=width - q_center,
        half_v=dome - a.apex_y,
        dome=dome,
        q_dome=q_dome,
        dome_curvature=a.costophrenic_depth / (width - q_dome) ** 2,
        hilum=(side * (q_medial + 0.07), hilum_v),
        costophrenic=(side * width, dome + a.costophrenic_depth),
    )


def _lung_sdf(q, v, lung: _Lung):
    """Signed distance to one lung: apex/lateral wall ellipse, diaphragm parabola, mediastinum."""
    wall = _ellipse_sdf(q, np.minimum(v, lung.dome), lung.q_center, lung.dome, lung.half_q, lung.half_v)
    dq = q - lung.q_dome
    diaphragm = (v - lung.dome - lung.dome_curvature * dq * dq) / np.sqrt(1 + (2 * lung.dome_curvature * dq) ** 2)
    return np.maximum(np.maximum(wall, diaphragm), lung.q_medial - q)


def _wall_q(v, lung: _Lung):
    """Lateral extent of the lung (inner rib cage) at height v."""
    t = np.clip((np.minimum(v, lung.dome) - lung.dome) / lung.half_v, -1.0, 0.0)
    return lung.q_center + lung.half_q * np.sqrt(1.0 - t * t)


def _heart_geometry(a: Anatomy):
    """Cardiac ellipse (centre u, centre v, semi-axes): one third right of the midline, two thirds left.

    The centre sits at the left dome, so the visible upper half is widest at the diaphragm, where the
    cardiothoracic ratio is measured.
    """
    width = a.heart_ratio * 2 * a.thorax_half_width
    return a.mediastinum_shift + 0.15 * width, a.left_dome_y + 0.03, width / 2, a.heart_height


def _heart_sdf(u, v, a: Anatomy):
    """The cardiac silhouette: an ellipse narrowed toward its top (the great vessels)."""
    heart_u, heart_v, half_u, half_v = _heart_geometry(a)
    taper = 1.0 + 0.25 * np.minimum(v - heart_v, 0.0) / half_v  # 0.75 of the width at the top
    return _ellipse_sdf(heart_u + (u - heart_u) / taper, v, heart_u, heart_v, half_u, half_v)


def landmarks(anatomy: Anatomy) -> dict[str, tuple[float, float]]:
    """Normalised image coordinates (x, y) of named landmarks of a (normal) patient.

    Keys: right_/left_ + apex, hilum, costophrenic (the angle's vertex), plus carina and heart_center.
    "right" is the patient's right, i.e. the image left. Findings that move anatomy (cardiomegaly,
    atelectasis volume loss) are not reflected.
    """
    frame = _Frame.build(32, anatomy)
    points = {"carina": (anatomy.mediastinum_shift, anatomy.apex_y + 0.36)}
    for name, side in (("right", -1), ("left", 1)):
        lung = _lung(anatomy, side)
        points[f"{name}_apex"] = (side * lung.q_center, anatomy.apex_y)
        points[f"{name}_hilum"] = lung.hilum
        points[f"{name}_costophrenic"] = lung.costophrenic
    heart_u, heart_v, _, _ = _heart_geometry(anatomy)
    points["heart_center"] = (heart_u, heart_v)
    return {k: tuple(float(c) for c in frame.to_image(np.asarray(p, dtype=np.float64))) for k, p in points.items()}


def _vessel_tree(rng: np.random.Generator, lung: _Lung):
    """Pulmonary vessels branching from the hilum: (starts, ends, weights, generation) arrays.

    Four generations of binary branching; weights fall with generation and distance from the hilum,
    so markings are dense centrally and fade toward the periphery.
    """
    s = lung.side
    # Primary directions fan from up-lateral to down-lateral (angle 0 = lateral, + = downward).
    angles = np.deg2rad(np.array([-80.0, -45.0, -10.0, 25.0, 60.0]) + rng.uniform(-10, 10, 5))
    lengths = rng.uniform(0.16, 0.22, 5)
    starts = np.tile(np.asarray(lung.hilum, dtype=np.float64), (5, 1))
    out = []
    for generation in range(4):
        ends = starts + lengths[:, None] * np.stack([s * np.cos(angles), np.sin(angles)], -1)
        out.append((starts, ends, np.full(len(starts), generation)))
        n = len(starts)
        starts = np.repeat(ends, 2, axis=0)
        spread = np.deg2rad(rng.uniform(15, 35, 2 * n)) * np.tile([-1.0, 1.0], n)
        angles = np.repeat(angles, 2) + spread
        lengths = np.repeat(lengths, 2) * rng.uniform(0.65, 0.85, 2 * n)
    starts, ends, generation = (np.concatenate(column) for column in zip(*out))
    dist = np.linalg.norm((starts + ends) / 2 - np.asarray(lung.hilum), axis=1)
    weights = np.array([0.4, 0.26, 0.16, 0.1])[generation] * np.exp(-dist / 0.5)
    return starts, ends, weights, generation


def _rib_field(frame: _Frame, a: Anatomy, side: int, lung: _Lung, fracture: dict | None) -> np.ndarray:
    """Posterior ribs of one side as bands in a coordinate that follows lateral-downward arcs.

    r = (v - arc(q)) / spacing counts ribs; each rib occupies the first half of its period. A fracture
    cuts a gap around `q` out of the broken ribs and steps their lateral fragments by `delta` across
    the rib.
    """
    q = side * frame.u  # ribs hang from the spine, which mediastinal shift does not move
    width = a.thorax_half_width
    qn = q / width
    arc = a.rib_curvature * qn * qn - 0.04 * qn  # rises slightly off the spine, then falls laterally
    slope = np.sqrt(1 + ((2 * a.rib_curvature * qn - 0.04) / width) ** 2)
    top = a.apex_y - 0.12 + a.rib_phase * 0.5 * a.rib_spacing

    def band(r):
        index = np.floor(r)
        t = r - index
        # Distance (normalised units, across the rib) outside the band t in [0, 0.5].
        d = (np.abs(t - 0.25) - 0.25) * a.rib_spacing / slope
        return _inside(d, frame.px), index

    r = (frame.v - arc - top) / a.rib_spacing
    ribs, index = band(r)
    valid = (index >= 0) & (index < 10)
    if fracture is not None and fracture["side"] == side:
        broken = np.isin(index, fracture["ribs"])
        lateral = q > fracture["q"]
        # `delta` is the step across the rib; along v it is longer where the rib is oblique.
        qf = fracture["q"] / width
        step = fracture["delta"] * np.sqrt(1 + ((2 * a.rib_curvature * qf - 0.04) / width) ** 2)
        fragment, fragment_index = band(r - step / a.rib_spacing)
        fragment = fragment * (np.isin(fragment_index, fracture["ribs"]) & lateral)
        ribs = np.maximum(ribs * ~(broken & lateral), fragment)
        gap = _inside(np.abs(q - fracture["q"]) - fracture["gap"] / 2, frame.px)
        near_break = broken | np.isin(fragment_index, fracture["ribs"])
        ribs = ribs * (1 - gap * near_break)
    extent = np.maximum(0.05 - q, q - _wall_q(frame.v, lung) - 0.06)  # spine to outer chest wall
    # Lower ribs fade into the abdomen's soft tissue below the costophrenic angle.
    below = _inside(frame.v - (lung.costophrenic[1] + 0.06), 0.12)
    return ribs * valid * _inside(extent, frame.px) * below


def _clavicle(frame: _Frame, a: Anatomy, side: int) -> np.ndarray:
    q = side * frame.u
    centre = a.clavicle_y - np.tan(a.clavicle_angle) * q + 0.04 * np.sin(np.pi * q / a.thorax_half_width)
    d = np.maximum(np.abs(frame.v - centre) - 0.032, np.maximum(0.03 - q, q - a.thorax_half_width - 0.1))
    return _inside(d, frame.px)


@dataclass
class _Film:
    """Layers that findings edit before the film is exposed. Arrays are (size, size) float32."""

    frame: _Frame
    anatomy: Anatomy
    lungs: dict  # side -> _Lung
    lung_sdf: dict  # side -> signed distance field
    air: np.ndarray  # lung aeration in [0, 1]; airspace disease lowers it
    density: np.ndarray  # extra attenuation (bone, fluid, nodules; negative = extra air)
    markings: np.ndarray  # vessels and parenchymal texture, visible only where aerated
    bronchi: np.ndarray  # fine branching pattern, used for air bronchograms
    metal: np.ndarray  # coverage of metal objects in [0, 1] (composited as white at exposure)
    wires: list  # (starts, ends, weights) metal segments, stroked into `metal` at exposure

    def lung_mask(self, side: int) -> np.ndarray:
        return _inside(self.lung_sdf[side], self.frame.px)


def _normal_chest(frame: _Frame, a: Anatomy, texture_rng: np.random.Generator, fracture: dict | None) -> _Film:
    """Draw the normal chest: body, lungs with markings, heart, mediastinum, airway, bones."""
    u, v, px = frame.u, frame.v, frame.px
    width = a.thorax_half_width
    body_half = width + a.soft_tissue + 0.04
    torso = _box_sdf(u, v, 0.0, 0.55, body_half, 1.3 - (a.apex_y - 0.16), 0.3)
    neck = _box_sdf(u, v, 0.0, -1.0, 0.2, 1.0 - (a.apex_y - 0.1), 0.0)
    body = _inside(np.minimum(torso, neck), px)
    thickness = np.sqrt(np.clip(1 - (u / body_half) ** 2, 0.05, 1.0))  # a cylinder is thinner at the flanks
    core = _inside(_box_sdf(u, v, 0.0, 0.55, width + 0.01, 1.3 - (a.apex_y - 0.1), 0.3), px)
    density = (SOFT * thickness * body + CORE * core).astype(np.float32)

    lungs = {side: _lung(a, side) for side in (-1, 1)}
    lung_sdf = {side: _lung_sdf(side * u, v, lungs[side]) for side in (-1, 1)}
    air = _inside(np.minimum(lung_sdf[-1], lung_sdf[1]), px)
    heart = _inside(_heart_sdf(u, v, a), px)
    knob_u = a.mediastinum_shift + a.mediastinum_half_width + 0.015  # aortic knob on the patient's left
    knob = _inside(_ellipse_sdf(u, v, knob_u, a.apex_y + 0.3, 0.065, 0.06), px)
    air = air * (1 - heart) * (1 - knob)

    # Airway: trachea down to the carina, main bronchi to the hila (dark air columns).
    carina = (a.mediastinum_shift, a.apex_y + 0.36)
    airway = _inside(np.maximum(np.abs(u - carina[0]) - 0.035, v - carina[1]), px)
    for side in (-1, 1):
        airway = np.maximum(airway, _inside(_segment_distance(u, v, carina, lungs[side].hilum) - 0.022, px))
    density -= 0.45 * airway * core

    # Spine behind the mediastinum, with faint vertebral bodies.
    spine = _inside(np.abs(u) - 0.075, px)
    density += SPINE * spine * (0.8 + 0.2 * np.cos(2 * np.pi * v / 0.12)) * core
    for side in (-1, 1):
        density += RIB * _rib_field(frame, a, side, lungs[side], fracture) * body
        density += CLAVICLE * _clavicle(frame, a, side) * body

    # Hila and the vessel tree; vessels are drawn at two calibres.
    trees = [_vessel_tree(texture_rng, lungs[side]) for side in (-1, 1)]
    starts, ends, weights, generation = (np.concatenate(column) for column in zip(*trees))
    thick = generation < 2
    markings = frame.stroke(starts[thick], ends[thick], weights[thick], 0.011)
    bronchi = frame.stroke(starts[~thick], ends[~thick], weights[~thick] / 0.15, 0.006)
    markings += 0.15 * bronchi
    for side in (-1, 1):
        hu, hv = lungs[side].hilum
        markings += 0.22 * np.exp(-((u - hu) ** 2 + (v - hv) ** 2) / 0.07**2)
    markings += 0.05 * (frame.mottle(texture_rng, 0.03) - 0.5)  # parenchymal texture

    # Gastric bubble under the left hemidiaphragm.
    bubble = _inside(_ellipse_sdf(u, v, 0.45 * width, a.left_dome_y + 0.13, 0.09, 0.05), px)
    density -= 0.5 * bubble * core
    metal = np.zeros_like(u)
    return _Film(frame, a, lungs, lung_sdf, air.astype(np.float32), density, markings, bronchi, metal, [])


# ----------------------------------------------------------------------------- findings


def _lung_point(rng: np.random.Generator, film: _Film, side: int, margin: float, tries: int = 64):
    """A random (u, v) inside the aerated lung of `side`, at least `margin` from its edge and the heart."""
    lung, a = film.lungs[side], film.anatomy
    q = rng.uniform(lung.q_medial, a.thorax_half_width, tries)  # rejection sampling, all tries at once
    v = rng.uniform(a.apex_y, lung.dome + 0.1, tries)
    ok = (_lung_sdf(q, v, lung) < -margin) & (_heart_sdf(side * q, v, a) > margin)
    if ok.any():
        first = int(np.argmax(ok))
        return side * q[first], v[first]
    return side * (lung.q_center + 0.1), (a.apex_y + lung.dome) / 2


def _random_sides(rng: np.random.Generator, p_both: float) -> tuple[int, ...]:
    if rng.uniform() < p_both:
        return (-1, 1)
    return (int(rng.choice([-1, 1])),)


def _cardiomegaly(rng: np.random.Generator, a: Anatomy) -> Anatomy:
    return dataclasses.replace(a, heart_ratio=rng.uniform(0.56, 0.68), heart_height=a.heart_height + 0.03)


def _atelectasis_anatomy(rng: np.random.Generator, a: Anatomy) -> tuple[Anatomy, int]:
    """Choose the side; with volume loss raise its hemidiaphragm and pull the mediastinum toward it."""
    side = int(rng.choice([-1, 1]))
    if rng.uniform() < 0.6:
        lift = rng.uniform(0.07, 0.12)
        dome = "right_dome_y" if side < 0 else "left_dome_y"
        a = dataclasses.replace(a, **{dome: getattr(a, dome) - lift})
        a = dataclasses.replace(a, mediastinum_shift=a.mediastinum_shift + side * rng.uniform(0.025, 0.045))
    return a, side


def _fracture_plan(rng: np.random.Generator, a: Anatomy) -> dict:
    """Adjacent posterior ribs broken along one line over the lung (gap and step ~2-4 px at 64 px).

    The break is placed where the ribs cross aerated lung (lateral to the heart, above the dome), so
    it is never hidden behind the heart or in the abdomen.
    """
    side = int(rng.choice([-1, 1]))
    lung = _lung(a, side)
    q = rng.uniform(0.55, 0.8) * a.thorax_half_width
    qn = q / a.thorax_half_width
    rib_top = a.apex_y - 0.12 + a.rib_phase * 0.5 * a.rib_spacing + a.rib_curvature * qn * qn - 0.04 * qn
    # Ribs whose band at q lies between the apex region and the dome.
    lowest = int((lung.dome - 0.12 - rib_top) / a.rib_spacing)
    highest = int(np.ceil((a.apex_y + 0.15 - rib_top) / a.rib_spacing))
    count = int(rng.choice([2, 3, 4], p=[0.4, 0.35, 0.25]))
    first = int(rng.integers(highest, max(lowest - count + 1, highest) + 1))
    return {
        "side": side,
        "ribs": list(range(first, first + count)),
        "q": q,
        "gap": rng.uniform(0.13, 0.16),
        # Half a rib thickness: the band edges no longer line up, yet the fragments still overlap,
        # so it reads as one broken rib rather than a rib continuing in the next intercostal space.
        "delta": rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 0.6) * 0.5 * a.rib_spacing,
    }


def _effusion(rng: np.random.Generator, film: _Film) -> None:
    """Homogeneous fluid at a base with a meniscus rising along the lateral wall."""
    u, v, px = film.frame.u, film.frame.v, film.frame.px
    for side in _random_sides(rng, 0.35):
        lung = film.lungs[side]
        q = side * u
        level = lung.dome + rng.uniform(-0.22, 0.0)
        lateral = np.clip((q - lung.q_medial) / (film.anatomy.thorax_half_width - lung.q_medial), 0, 1)
        surface = level - rng.uniform(0.08, 0.16) * lateral**2
        pleural_space = _inside(q - film.anatomy.thorax_half_width, px) * _inside(lung.q_medial - q, px)
        fluid = _inside(surface - v, 1.5 * px) * pleural_space
        film.air *= 1 - fluid
        film.density += 0.1 * fluid


def _pneumothorax(rng: np.random.Generator, film: _Film) -> None:
    """Collapse one lung toward its hilum/base; pleural air is darker and has no markings."""
    u, v, px = film.frame.u, film.frame.v, film.frame.px
    side = int(rng.choice([-1, 1]))
    lung = film.lungs[side]
    scale = rng.uniform(0.58, 0.78)
    q0, v0 = lung.q_medial, lung.dome + 0.1  # tethered medially and at the base: air gathers apically
    q = side * u
    collapsed_sdf = _lung_sdf(q0 + (q - q0) / scale, v0 + (v - v0) / scale, lung) * scale
    lung_mask = film.lung_mask(side)
    pleural_air = lung_mask * (1 - _inside(collapsed_sdf, px))
    film.markings *= 1 - pleural_air
    film.density -= 0.25 * pleural_air
    line = _inside(np.abs(collapsed_sdf) - max(0.01, 0.4 * px), px) * lung_mask
    film.density += 0.45 * line


def _consolidation(rng: np.random.Generator, film: _Film) -> None:
    """Lobar/segmental airspace filling, sharp along a fissure, with optional air bronchograms."""
    u, v, px = film.frame.u, film.frame.v, film.frame.px
    side = int(rng.choice([-1, 1]))
    lung = film.lungs[side]
    q = side * u
    fissure = lung.hilum[1] + rng.uniform(-0.12, 0.08) + rng.uniform(-0.2, 0.2) * (q - 0.4)
    zone = rng.choice(["upper", "middle", "lower"])
    if zone == "upper":
        region = _inside(v - fissure, px)
    elif zone == "lower":  # reaches the diaphragm, effacing its silhouette
        region = _inside(fissure - v, px)
    else:  # middle lobe / lingula: below the fissure, beside the heart
        region = _inside(fissure - v, px) * _inside(v - (fissure + 0.3), 0.06)
    if rng.uniform() < 0.4:  # segmental: a wedge fanning from the hilum to the pleura
        hq, hv = side * lung.hilum[0], lung.hilum[1]
        direction = {"upper": -0.7, "middle": 0.35, "lower": 0.7}[zone] + rng.uniform(-0.3, 0.3)
        angle = np.arctan2(v - hv, q - hq)
        region = region * _inside(np.abs(angle - direction) - rng.uniform(0.3, 0.45), 0.15)
    region = region * film.lung_mask(side) * (0.8 + 0.2 * film.frame.mottle(rng, 0.05))
    film.air *= 1 - 0.95 * region
    film.density += 0.1 * region
    if rng.uniform() < 0.6:
        film.density -= 0.35 * np.clip(film.bronchi, 0, 1) * region


def _atelectasis(rng: np.random.Generator, film: _Film, side: int) -> None:
    """One or two plate-like bands above the (possibly elevated) hemidiaphragm."""
    u, v, px = film.frame.u, film.frame.v, film.frame.px
    lung = film.lungs[side]
    width = film.anatomy.thorax_half_width
    for _ in range(int(rng.integers(1, 3))):
        centre_v = lung.dome - rng.uniform(0.06, 0.2)
        centre_q = rng.uniform(lung.q_medial + 0.2, width - 0.15)
        half, tilt = rng.uniform(0.13, 0.22), rng.uniform(-0.25, 0.25)
        p0 = (side * (centre_q - half), centre_v - tilt * half)
        p1 = (side * (centre_q + half), centre_v + tilt * half)
        band = _inside(_segment_distance(u, v, p0, p1) - rng.uniform(0.022, 0.03), px) * film.lung_mask(side)
        film.air *= 1 - 0.9 * band
        film.density += 0.15 * band


def _edema(rng: np.random.Generator, film: _Film) -> None:
    """Bilateral perihilar haze, indistinct vessels and Kerley B lines."""
    frame = film.frame
    u, v = frame.u, frame.v
    film.markings = 1.3 * ndimage.gaussian_filter(film.markings, 0.015 / frame.px, truncate=2.0)
    mottle = frame.mottle(rng, 0.06)
    strength = rng.uniform(0.55, 0.75)
    lines = []
    for side in (-1, 1):
        lung = film.lungs[side]
        hu, hv = lung.hilum
        reach = rng.uniform(0.32, 0.42)  # bat wing: dense around the hilum, sparing the periphery
        haze = np.exp(-(((u - hu) / reach) ** 2) - ((v - hv) / (0.9 * reach)) ** 2)
        film.air *= 1 - strength * haze * (0.7 + 0.3 * mottle)
        for _ in range(int(rng.integers(4, 8))):
            line_v = lung.dome - rng.uniform(0.0, 0.3)
            wall = float(_wall_q(np.float64(line_v), lung)) - 0.01
            length = rng.uniform(0.06, 0.1)
            start = np.array([[side * wall, line_v]])
            lines.append((start, start + [[-side * length, 0.0]], np.array([0.3])))
    starts, ends, weights = _concat_segments(lines)
    film.density += frame.stroke(starts, ends, weights, 0.008) * film.air


def _nodule_mass(rng: np.random.Generator, film: _Film) -> None:
    """One to three round well-defined nodules, or one larger mass."""
    u, v, px = film.frame.u, film.frame.v, film.frame.px
    if rng.uniform() < 0.35:
        radii = [rng.uniform(0.1, 0.15)]
    else:
        radii = list(rng.uniform(0.045, 0.07, int(rng.integers(1, 4))))
    for radius in radii:
        cu, cv = _lung_point(rng, film, int(rng.choice([-1, 1])), radius)
        d = np.sqrt((u - cu) ** 2 + (v - cv) ** 2)
        sphere = np.sqrt(np.clip(1 - (d / radius) ** 2, 0.0, 1.0))  # projected thickness of a ball
        edge = _inside(d - radius, px)
        film.air *= 1 - 0.6 * edge
        film.density += (0.35 + 0.35 * sphere) * edge


def _opacity(rng: np.random.Generator, film: _Film) -> None:
    """Ill-defined, mottled hazy patches: fainter and softer-edged than consolidation."""
    u, v = film.frame.u, film.frame.v
    mottle = film.frame.mottle(rng, 0.04)
    for _ in range(int(rng.integers(2, 5))):
        radius = rng.uniform(0.14, 0.24)
        side = int(rng.choice([-1, 1]))
        cu, cv = _lung_point(rng, film, side, 0.4 * radius)
        patch = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / radius**2 * 1.5) * (0.3 + mottle)
        film.air *= 1 - rng.uniform(0.65, 0.8) * np.clip(1.5 * patch, 0, 1)


def _support_devices(rng: np.random.Generator, film: _Film) -> None:
    """Some of: endotracheal tube, central line, pacemaker with leads, sternotomy wires, NG tube."""
    a, frame = film.anatomy, film.frame
    ms, width = a.mediastinum_shift, a.thorax_half_width
    carina_v = a.apex_y + 0.36
    chosen = [name for name, p in (("ett", 0.5), ("line", 0.5), ("pacer", 0.35), ("wires", 0.3), ("ng", 0.3))
              if rng.uniform() < p]
    if not chosen:
        chosen = [str(rng.choice(["ett", "line", "pacer", "wires", "ng"]))]
    heart_u, heart_v, heart_a, _ = _heart_geometry(a)
    parts = []
    if "ett" in chosen:
        tip = (ms + rng.uniform(-0.01, 0.01), carina_v - rng.uniform(0.08, 0.2))
        for offset, weight in ((-0.022, 0.5), (0.0, 0.9), (0.022, 0.5)):  # tube walls and radiopaque stripe
            parts.append(_polyline_segments(np.array([[ms + offset, -1.1], [tip[0] + offset, tip[1]]]), weight))
    if "line" in chosen:
        side = int(rng.choice([-1, 1]))
        entry = (side * rng.uniform(0.45, 0.6) * width, a.clavicle_y + 0.06)
        svc = (ms - 0.07, carina_v - 0.05)
        tip = (ms - 0.07, carina_v + rng.uniform(0.05, 0.2))
        curve = np.concatenate([_bezier(entry, (0.5 * (entry[0] + svc[0]), entry[1] - 0.02), svc), [tip]])
        parts.append(_polyline_segments(curve, 1.0))
    if "pacer" in chosen:
        box = (rng.uniform(0.4, 0.6) * width, a.clavicle_y + rng.uniform(0.1, 0.16))
        half = (rng.uniform(0.07, 0.09), rng.uniform(0.05, 0.065))
        sdf = _box_sdf(frame.u, frame.v, box[0], box[1], half[0], half[1], 0.025)
        film.metal = np.maximum(film.metal, _inside(sdf, frame.px))
        svc = (ms - 0.06, carina_v)
        for target in ((ms - 0.06, heart_v - 0.15), (heart_u + 0.3 * heart_a, heart_v + 0.05)):
            lead = np.concatenate([_bezier(box, (box[0] * 0.5, a.clavicle_y - 0.02), svc),
                                   _bezier(svc, (svc[0], target[1]), target)[1:]])
            parts.append(_polyline_segments(lead, 1.0))
    if "wires" in chosen:
        t = np.linspace(0, 2 * np.pi, 13)
        for wire_v in np.linspace(carina_v - 0.12, heart_v + 0.02, int(rng.integers(4, 7))):
            loop = np.stack([ms + 0.035 * np.cos(t), wire_v + 0.02 * np.sin(t)], -1)
            parts.append(_polyline_segments(loop, 1.0))
    if "ng" in chosen:
        stomach = (0.45 * width, a.left_dome_y + 0.17)
        path = np.concatenate([[[ms + 0.03, -1.1]], _bezier((ms + 0.03, a.left_dome_y - 0.1),
                                                            (ms + 0.05, a.left_dome_y + 0.2), stomach)])
        parts.append(_polyline_segments(path, 0.8))
    film.wires.extend(parts)


# ----------------------------------------------------------------------------- render

_DRAW = {  # findings drawn onto the film, in this order (cardiomegaly only changes the anatomy)
    "effusion": _effusion,
    "consolidation": _consolidation,
    "opacity": _opacity,
    "edema": _edema,
    "nodule_mass": _nodule_mass,
    "pneumothorax": _pneumothorax,
    "support_devices": _support_devices,
}


def _checked(findings: Iterable[str], size) -> tuple[str, ...]:
    if isinstance(findings, str):  # a bare name would otherwise be read letter by letter
        findings = (findings,)
    names = check_findings(findings)
    pathologies = [name for name in names if name != "no_finding"]
    if "no_finding" in names and pathologies:
        raise ValueError(f"findings: 'no_finding' cannot be combined with pathologies {pathologies}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an int >= 32, got {size!r}")
    return tuple(pathologies)


def render_chest_xray(
    findings: Iterable[str] = (),
    size: int = 128,
    rng: np.random.Generator | int | None = None,
    anatomy: Anatomy | None = None,
) -> np.ndarray:
    """Render one PA chest radiograph showing `findings` (names from `FINDINGS`).

    findings: e.g. ("effusion", "support_devices"); () or ("no_finding",) draws a normal chest.
    size: output side in pixels, int >= 32. rng: Generator, seed or None. anatomy: a fixed patient
    (default: drawn from rng). The rng is split into independent streams for anatomy, texture and each
    pathology, so the same seed with and without a finding differs only where that finding is drawn.
    Returns (size, size) float32 in [0, 1], dense = bright, patient's right on the image left.
    """
    pathologies = _checked(findings, size)
    rng = np.random.default_rng(rng)
    seeds = rng.integers(0, 2**63, size=2 + len(PATHOLOGIES))
    streams = {name: np.random.default_rng(seed) for name, seed in zip(PATHOLOGIES, seeds[2:])}
    a = sample_anatomy(np.random.default_rng(seeds[0])) if anatomy is None else anatomy
    texture_rng = np.random.default_rng(seeds[1])

    # Findings that move anatomy are applied before anything is drawn.
    if "cardiomegaly" in pathologies:
        a = _cardiomegaly(streams["cardiomegaly"], a)
    if "atelectasis" in pathologies:
        a, atelectasis_side = _atelectasis_anatomy(streams["atelectasis"], a)
    fracture = None
    if "fracture" in pathologies:
        fracture = _fracture_plan(streams["fracture"], a)

    frame = _Frame.build(int(size), a)
    film = _normal_chest(frame, a, texture_rng, fracture)
    if "atelectasis" in pathologies:
        _atelectasis(streams["atelectasis"], film, atelectasis_side)
    for name, draw in _DRAW.items():
        if name in pathologies:
            draw(streams[name], film)
    return _expose(film, texture_rng)


def _expose(film: _Film, rng: np.random.Generator) -> np.ndarray:
    """Attenuation -> film intensity: exponential absorption, window, brightness, gamma, metal, noise."""
    a, frame = film.anatomy, film.frame
    attenuation = film.density + (film.markings - AIR) * film.air
    image = 1.0 - np.exp(-a.contrast * np.maximum(attenuation, 0.0))
    image = np.clip((image - BLACK_LEVEL) / (WHITE_LEVEL - BLACK_LEVEL) + a.brightness, 0.0, 1.0) ** a.gamma
    metal = film.metal
    if film.wires:  # thin wires peak below 1 after blurring; 1.5x makes their centres fully opaque
        starts, ends, weights = _concat_segments(film.wires)
        metal = np.maximum(metal, np.clip(1.5 * frame.stroke(starts, ends, weights, 0.006), 0.0, 1.0))
    image = image + (1.0 - image) * metal  # metal saturates the detector whatever the exposure
    image = image + a.noise * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def render_batch(findings_list: Sequence[Iterable[str]], size: int = 128, seed: int = 0) -> np.ndarray:
    """Render one image per findings set: (N, 1, size, size) float32 in [0, 1].

    Deterministic given `seed`; item i uses its own generator seeded by (seed, i), so an item does
    not depend on the others or on the batch length.
    """
    _checked((), size)
    images = np.empty((len(findings_list), 1, size, size), dtype=np.float32)
    for i, findings in enumerate(findings_list):
        images[i, 0] = render_chest_xray(findings, size, np.random.default_rng([seed, i]))
    return images
