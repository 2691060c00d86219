"""Geometry helpers of the synthetic fetal MRI phantom: rotations, implicit shapes, textures.

Every shape is an *approximate signed distance* in millimetres (negative inside), evaluated
with vectorised float32 numpy on the pixels of a window only. Intensities are composited with
a soft edge one pixel wide (painter's algorithm), which gives in-plane partial volume for free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

F32 = np.float32
_EPS = 1e-8

#: 26 unit directions (cube faces, edges and corners) used to test that a sphere is inside a shape.
SPHERE_DIRS = np.array(
    [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)],
    dtype=float,
)
SPHERE_DIRS /= np.linalg.norm(SPHERE_DIRS, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- rotations
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed random 3D rotation matrix (3, 3) from a random unit quaternion."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rot_x(angle: float) -> np.ndarray:
    """Rotation (3, 3) by ``angle`` radians about the x axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """Rotation (3, 3) by ``angle`` radians about the y axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    """Rotation (3, 3) by ``angle`` radians about the z axis (the slice normal)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` divided by its Euclidean norm."""
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def random_unit(rng: np.random.Generator) -> np.ndarray:
    """Uniform random unit vector (3,)."""
    return unit(rng.standard_normal(3))


def frame_from_axis(axis_z: np.ndarray, hint_y: np.ndarray) -> np.ndarray:
    """Right-handed rotation whose third column is ``axis_z`` and second is near ``hint_y``.

    Returns
    -------
    ndarray (3, 3)
        Columns are the local x, y, z axes expressed in world coordinates.
    """
    z = unit(axis_z)
    y = np.asarray(hint_y, dtype=float) - np.dot(hint_y, z) * z
    if np.linalg.norm(y) < 1e-6:  # hint parallel to the axis: any perpendicular will do
        y = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    y = unit(y)
    return np.stack([np.cross(y, z), y, z], axis=1)


# ----------------------------------------------------------------------------- implicit shapes
def ellipsoid_sdf(x: np.ndarray, y: np.ndarray, z: np.ndarray, semi) -> np.ndarray:
    """First-order signed distance (mm) to an axis-aligned ellipsoid centred at the origin.

    ``d = (rho - 1) / |grad rho|`` with ``rho`` the normalised radius: exact on the surface,
    a good approximation within a few millimetres of it, always negative inside.

    Parameters
    ----------
    x, y, z : ndarray, broadcastable, mm
        Local coordinates (not modified).
    semi : sequence of 3 floats
        Semi-axes (mm).
    """
    inv = [F32(1.0 / s) for s in semi]
    sq = []
    for c, i in zip((x, y, z), inv):
        q = c * i
        np.square(q, out=q)
        sq.append(q)
    r2 = sq[0] + sq[1]
    r2 += sq[2]
    for q, i in zip(sq, inv):
        q *= i * i
    g2 = sq[0]
    g2 += sq[1]
    g2 += sq[2]
    return _finish_sdf(r2, g2, min(semi))


def _finish_sdf(r2: np.ndarray, g2: np.ndarray, min_semi: float) -> np.ndarray:
    """``(sqrt(r2) - 1) * sqrt(r2 / g2)`` with a safe centre (where it tends to ``-min_semi``)."""
    g2 += F32(_EPS)
    ratio = r2 + F32(_EPS * min_semi**2)
    ratio /= g2
    np.sqrt(ratio, out=ratio)
    np.sqrt(r2, out=r2)
    r2 -= F32(1.0)
    r2 *= ratio
    return r2


def ellipse_sdf(x: np.ndarray, y: np.ndarray, a, b) -> np.ndarray:
    """Signed distance (mm) to a 2D ellipse; ``x`` of shape (W, 1), ``y`` of shape (1, H).

    ``a`` and ``b`` may be arrays broadcastable with ``x`` and ``y`` (e.g. a different
    semi-axis in front of and behind the centre). Terms are computed on the 1D axes and
    combined by outer sums, so the cost is a handful of full-size operations.
    """
    qx, qy = x / a, y / b
    sx, sy = qx * qx, qy * qy
    r2 = sx + sy
    g2 = sx / (a * a) + sy / (b * b)
    return _finish_sdf(r2, g2, float(np.min(a)))


def rotated_ellipse_sdf(dx: np.ndarray, dy: np.ndarray, a: float, b: float, phi: float) -> np.ndarray:
    """Signed distance (mm) to an ellipse with semi-axes (a, b), first axis at angle ``phi``.

    ``dx`` (W, 1) and ``dy`` (1, H) are offsets from the centre (mm).
    """
    c, s = np.cos(phi), np.sin(phi)
    qu = dx * F32(c / a) + dy * F32(s / a)
    qv = dx * F32(-s / b) + dy * F32(c / b)
    np.square(qu, out=qu)
    np.square(qv, out=qv)
    r2 = qu + qv
    qu *= F32(1.0 / (a * a))
    qv *= F32(1.0 / (b * b))
    qu += qv
    return _finish_sdf(r2, qu, min(a, b))


def ellipsoid_section(centre, rotation: np.ndarray, semi, z: float):
    """Cross-section of a rotated ellipsoid with the plane at height ``z``.

    Parameters
    ----------
    centre : (3,) mm; rotation : (3, 3), columns = ellipsoid axes in world; semi : (3,) mm.

    Returns
    -------
    (cx, cy, a, b, phi) or None
        Centre (mm), semi-axes (mm) and angle (rad) of the section ellipse; None when the
        plane misses the ellipsoid.
    """
    q = rotation @ np.diag(1.0 / np.asarray(semi, float) ** 2) @ rotation.T
    w = z - centre[2]
    a2, bv = q[:2, :2], q[:2, 2]
    sol = np.linalg.solve(a2, bv)
    k = 1.0 - w * w * (q[2, 2] - bv @ sol)
    if k <= 1e-9:
        return None
    evals, evecs = np.linalg.eigh(a2 / k)
    ax = 1.0 / np.sqrt(evals)
    phi = float(np.arctan2(evecs[1, 0], evecs[0, 0]))
    return centre[0] - w * sol[0], centre[1] - w * sol[1], float(ax[0]), float(ax[1]), phi


def section_extent(a: float, b: float, phi: float) -> tuple[float, float]:
    """Half extents (x, y) of the bounding box of a rotated ellipse."""
    c, s = np.cos(phi), np.sin(phi)
    return float(np.hypot(a * c, b * s)), float(np.hypot(a * s, b * c))


def capsule_sdf(x: np.ndarray, y: np.ndarray, z: np.ndarray, z0: float, z1: float, radius: float) -> np.ndarray:
    """Signed distance (mm) to a capsule around the segment x = y = 0, z0 <= z <= z1."""
    dz = z - np.clip(z, F32(z0), F32(z1))
    return np.sqrt(x * x + y * y + dz * dz) - F32(radius)


def ramp(d: np.ndarray, inv_width: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance: 1 inside, 0 outside, linear over one width."""
    a = F32(0.5) - d * F32(inv_width)
    np.clip(a, F32(0.0), F32(1.0), out=a)
    return a


def composite(dst: np.ndarray, alpha: np.ndarray, value) -> None:
    """Paint ``value`` over ``dst`` in place with opacity ``alpha`` (painter's algorithm)."""
    dst += alpha * (value - dst)


# ----------------------------------------------------------------------------- smooth noise
def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """Periodic smooth Gaussian noise (unit standard deviation) with features of ``cell_px`` pixels.

    A coarse grid of white noise is upsampled with cubic splines (periodic boundary), so the
    field can be rolled by any offset without a seam.

    Returns
    -------
    ndarray, float32, shape ``shape``
    """
    coarse = tuple(max(4, int(round(n / max(cell_px, 1.0)))) for n in shape)
    grid = rng.standard_normal(coarse).astype(F32)
    zoom = tuple(n / c for n, c in zip(shape, coarse))
    field = ndimage.zoom(grid, zoom, order=3, mode="grid-wrap", grid_mode=True)
    field = field[: shape[0], : shape[1]]
    if field.shape != shape:  # rounding in zoom: pad by wrapping
        field = np.pad(field, [(0, n - f) for n, f in zip(shape, field.shape)], mode="wrap")
    field -= field.mean()
    field /= field.std() + F32(1e-6)
    return field.astype(F32, copy=False)


def cosine_field(rng: np.random.Generator, n_terms: int, radius: float, freq: tuple[float, float],
                 amp: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random smooth 3D field ``sum_k a_k cos(w_k . p + phi_k)`` as parameters.

    Parameters
    ----------
    radius : float, mm
        Length scale: wave vectors have magnitude ``f / radius`` with ``f`` in ``freq``.
    amp : (low, high)
        Range of the amplitudes ``a_k`` (same unit as the field, e.g. mm).

    Returns
    -------
    (waves (n, 3), phases (n,), amps (n,)) : the terms, for :func:`eval_cosine_field`.
    """
    waves = np.stack([random_unit(rng) * rng.uniform(*freq) / radius for _ in range(n_terms)])
    phases = rng.uniform(0, 2 * np.pi, n_terms)
    amps = rng.uniform(*amp, n_terms) * rng.choice([-1.0, 1.0], n_terms)
    return waves, phases, amps


def eval_cosine_field(terms, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Evaluate a :func:`cosine_field` at local coordinates (float32, broadcast shape)."""
    waves, phases, amps = terms
    out = None
    for (wx, wy, wz), ph, a in zip(waves, phases, amps):
        t = np.cos(x * F32(wx) + y * F32(wy) + (z * F32(wz) + F32(ph))) * F32(a)
        out = t if out is None else out + t
    return out


# ----------------------------------------------------------------------------- slice grid
@dataclass(frozen=True)
class Grid:
    """The in-plane pixel grid and the slab of the current slice.

    Attributes
    ----------
    xs, ys : ndarray (M,), float32, mm
        Pixel-centre coordinates along the first and second array axes.
    spacing : float, mm
        In-plane pixel size.
    edge : float, mm
        Width of the linear ramp of every soft edge (the point-spread of the image); at least
        ``spacing``.
    """

    xs: np.ndarray
    ys: np.ndarray
    spacing: float
    edge: float = 0.0

    def __post_init__(self) -> None:
        if self.edge < self.spacing:  # soft edges are at least one pixel wide
            object.__setattr__(self, "edge", float(self.spacing))

    def index_range(self, centre: float, radius: float, axis: int) -> tuple[int, int]:
        """Pixel index range [i0, i1) whose centres lie within ``centre +- radius`` (mm)."""
        coords = self.xs if axis == 0 else self.ys
        x0 = float(coords[0])
        i0 = int(np.floor((centre - radius - x0) / self.spacing))
        i1 = int(np.ceil((centre + radius - x0) / self.spacing)) + 1
        return max(i0, 0), min(i1, coords.size)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Index window of the rectangle [x0, x1] x [y0, y1] (mm), or None when off the grid."""
        i0, i1 = self.index_range(0.5 * (x0 + x1), 0.5 * (x1 - x0), 0)
        j0, j1 = self.index_range(0.5 * (y0 + y1), 0.5 * (y1 - y0), 1)
        if i1 <= i0 or j1 <= j0:
            return None
        return slice(i0, i1), slice(j0, j1)

    def window(self, cx: float, cy: float, radius: float) -> tuple[slice, slice] | None:
        """Index window of the square ``(cx, cy) +- radius`` (mm), or None when off the grid."""
        i0, i1 = self.index_range(cx, radius, 0)
        j0, j1 = self.index_range(cy, radius, 1)
        if i1 <= i0 or j1 <= j0:
            return None
        return slice(i0, i1), slice(j0, j1)
