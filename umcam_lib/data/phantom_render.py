"""Rendering of a sampled :class:`~.phantom_anatomy.Anatomy` into slices.

Each slice is rendered in 2D: the static maternal anatomy at the slice centre on the full
grid (each organ inside its own window), then the moving fetus on ``n_sub`` sub-planes through
the slab (each structure inside its window only), which are averaged; the brain mask keeps
the pixels that are brain on at least half of the sub-planes.
"""
from __future__ import annotations

import numpy as np

from .phantom_anatomy import Anatomy, Blob, Fetus, Group, Head, Mother, Prim
from .phantom_geometry import (
    F32,
    Grid,
    capsule_sdf,
    composite,
    ellipse_sdf,
    ellipsoid_sdf,
    ellipsoid_section,
    rotated_ellipse_sdf,
    section_extent,
    ramp,
    rot_z,
    smooth_field,
)


# ============================================================================ textures
class Textures:
    """Per-volume smooth noise fields, rolled, flipped and transposed differently for every slice.

    ``fine`` has ~2.5 mm features, ``coarse`` ~12 mm; both float32 (M, M), unit standard
    deviation and periodic, so a roll leaves no seam.
    """

    def __init__(self, rng: np.random.Generator, matrix: int, spacing: float, n_slices: int):
        shape = (matrix, matrix)
        self.fine = smooth_field(rng, shape, 2.5 / spacing)
        self.coarse = smooth_field(rng, shape, 12.0 / spacing)
        self.offsets = rng.integers(0, matrix, (n_slices, 4))
        self.flips = rng.integers(0, 2, (n_slices, 2, 3)).astype(bool)

    @staticmethod
    def _variant(field: np.ndarray, flips: np.ndarray) -> np.ndarray:
        if flips[0]:
            field = field[::-1]
        if flips[1]:
            field = field[:, ::-1]
        return field.T if flips[2] else field

    def for_slice(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(fine, coarse) texture of slice ``s`` (new contiguous arrays)."""
        o = self.offsets[s]
        fine = np.roll(self._variant(self.fine, self.flips[s, 0]), (o[0], o[1]), axis=(0, 1))
        coarse = np.roll(self._variant(self.coarse, self.flips[s, 1]), (o[2], o[3]), axis=(0, 1))
        return fine, coarse


# ============================================================================ mother
def _paint_layered(dst: np.ndarray, d: np.ndarray, value, wall: float, wall_value: float, inv_w: float) -> None:
    """Paint a structure of signed distance ``d``: a rim of ``wall`` mm, then the content."""
    if wall > 0:
        composite(dst, ramp(d, inv_w), wall_value)
        d = d + F32(wall)
    composite(dst, ramp(d, inv_w), value)


def _paint_blob(img: np.ndarray, grid: Grid, blob: Blob, z: float, fine: np.ndarray) -> None:
    """Cross-section at height ``z`` of an axis-aligned maternal ellipsoid."""
    t = (z - blob.centre[2]) / blob.semi[2]
    if abs(t) >= 1.0:
        return
    k = np.sqrt(1.0 - t * t)
    a, b = blob.semi[0] * k, blob.semi[1] * k
    if min(a, b) < 0.5 * grid.spacing:
        return
    win = grid.window(blob.centre[0], blob.centre[1], max(a, b) + grid.spacing)
    if win is None:
        return
    x = grid.xs[win[0], None] - F32(blob.centre[0])
    y = grid.ys[None, win[1]] - F32(blob.centre[1])
    d = ellipse_sdf(x, y, F32(a), F32(b))
    value = blob.value + F32(blob.tex) * fine[win] if blob.tex else blob.value
    _paint_layered(img[win], d, value, blob.wall, blob.wall_value, 1.0 / grid.edge)


def _paint_spine(img: np.ndarray, grid: Grid, mo: Mother, c: dict, z: float) -> None:
    inv_w = 1.0 / grid.edge
    va, vb = mo.vertebra
    in_disc = ((z - mo.disc_phase) % mo.disc_period) < 7.0
    y_post = mo.y_spine - vb - 9.0
    for cx, cy, a, b, wall, val in (
        (0.0, y_post, 14.0, 12.0, 0.0, c["bone"]),
        (0.0, mo.y_spine, va, vb, 2.0, c["disc"] if in_disc else c["vertebra"]),
        (0.0, y_post + 2.0, 6.0, 6.0, 0.0, c["csf"]),
    ):
        win = grid.window(cx, cy, max(a, b) + grid.spacing)
        if win is None:
            continue
        x = grid.xs[win[0], None] - F32(cx)
        y = grid.ys[None, win[1]] - F32(cy)
        _paint_layered(img[win], ellipse_sdf(x, y, F32(a), F32(b)), val, wall, c["bone"], inv_w)


def _section_sdf(grid: Grid, sec, win) -> np.ndarray:
    """Signed distance (mm) to a section ellipse ``(cx, cy, a, b, phi)`` on window ``win``."""
    cx, cy, a, b, phi = sec
    dx = grid.xs[win[0], None] - F32(cx)
    dy = grid.ys[None, win[1]] - F32(cy)
    return rotated_ellipse_sdf(dx, dy, a, b, phi)


def _section_box(grid: Grid, sec, margin: float):
    cx, cy, a, b, phi = sec
    hx, hy = section_extent(a, b, phi)
    return grid.box(cx - hx - margin, cx + hx + margin, cy - hy - margin, cy + hy + margin)


def _paint_uterus(img: np.ndarray, grid: Grid, mo: Mother, c: dict, z: float, fine, coarse) -> None:
    """Myometrium, amniotic fluid and placenta: plane sections of the 3D shapes at height z."""
    outer = ellipsoid_section(mo.uterus_centre, mo.uterus_rotation, mo.uterus_semi, z)
    if outer is None:
        return
    win = _section_box(grid, outer, grid.spacing)
    if win is None:
        return
    inv_w = 1.0 / grid.edge
    dst = img[win]
    composite(dst, ramp(_section_sdf(grid, outer, win), inv_w), c["myometrium"] + F32(0.04) * fine[win])
    cavity = ellipsoid_section(mo.uterus_centre, mo.uterus_rotation, mo.cavity_semi, z)
    if cavity is None:
        return
    d_cav = _section_sdf(grid, cavity, win)
    composite(dst, ramp(d_cav, inv_w), c["fluid"])
    rot = mo.uterus_rotation @ mo.placenta_rotation
    centre = mo.uterus_centre + mo.uterus_rotation @ mo.placenta_centre
    plac = ellipsoid_section(centre, rot, mo.placenta_semi, z)
    if plac is None:
        return
    pwin = _section_box(grid, plac, grid.spacing)
    if pwin is None:
        return
    i0, i1 = max(pwin[0].start, win[0].start), min(pwin[0].stop, win[0].stop)
    j0, j1 = max(pwin[1].start, win[1].start), min(pwin[1].stop, win[1].stop)
    if i1 <= i0 or j1 <= j0:
        return
    pwin = (slice(i0, i1), slice(j0, j1))
    rel = (slice(i0 - win[0].start, i1 - win[0].start), slice(j0 - win[1].start, j1 - win[1].start))
    d_pl = np.maximum(_section_sdf(grid, plac, pwin), d_cav[rel])
    value = c["placenta"] + F32(0.07) * coarse[pwin] + F32(0.04) * fine[pwin]
    composite(dst[rel], ramp(d_pl, inv_w), value)


def render_mother(mo: Mother, c: dict, grid: Grid, z: float, fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Maternal anatomy on the slice plane at height ``z`` (mm).

    The abdominal wall layers (skin, fat, muscle) are offsets of one signed distance, with a
    thickness that blends the anterior / posterior and lateral values by direction.

    Returns
    -------
    ndarray, float32, shape (M, M)
        Contrast in [0, 1]; 0 outside the body.
    """
    inv_w = 1.0 / grid.edge
    m = grid.xs.size
    img = np.zeros((m, m), F32)
    a, front, back = mo.outline(z)
    box = grid.box(-a - grid.spacing, a + grid.spacing, mo.yc - back - grid.spacing, mo.yc + front + grid.spacing)
    if box is None:
        return img
    x = grid.xs[box[0], None]
    y = grid.ys[None, box[1]] - F32(mo.yc)
    ant = y > 0
    d = ellipse_sdf(x, y, F32(a), np.where(ant, F32(front), F32(back)).astype(F32))
    x2, y2 = x * x, y * y
    w = x2 / (x2 + y2 + F32(1e-3))  # 1 lateral, 0 anterior / posterior
    fat_y = np.where(ant, F32(mo.fat[0]), F32(mo.fat[2])).astype(F32)
    mus_y = np.where(ant, F32(mo.muscle[0]), F32(mo.muscle[2])).astype(F32)
    skin = F32(2.0)
    t_fat = (F32(mo.fat[1]) - fat_y) * w
    t_fat += fat_y + skin
    t_mus = (F32(mo.muscle[1]) - mus_y) * w
    t_mus += mus_y
    t_mus += t_fat
    sub = img[box]
    body = ramp(d, inv_w)
    np.multiply(body, F32(c["skin"]), out=sub)
    composite(sub, ramp(d + skin, inv_w), c["fat"] + F32(0.03) * fine[box])
    composite(sub, ramp(d + t_fat, inv_w), c["muscle"])
    wall = sub.copy()
    cavity = ramp(d + t_mus, inv_w)
    composite(sub, cavity, c["organ"] + F32(0.1) * coarse[box] + F32(0.06) * fine[box])
    for blob in (*mo.blobs_below, *mo.bowel):
        if abs(z - blob.centre[2]) < blob.semi[2]:
            _paint_blob(img, grid, blob, z, fine)
    composite(sub, F32(1.0) - cavity, wall)  # organs stay inside the abdominal wall
    for blob in mo.blobs_above:
        if abs(z - blob.centre[2]) < blob.semi[2]:
            _paint_blob(img, grid, blob, z, fine)
    _paint_spine(img, grid, mo, c, z)
    _paint_uterus(img, grid, mo, c, z, fine, coarse)
    sub *= body  # organs must not stick out of the body ...
    img[: box[0].start] = 0.0  # ... nor out of its bounding box
    img[box[0].stop:] = 0.0
    img[:, : box[1].start] = 0.0
    img[:, box[1].stop:] = 0.0
    return img


# ============================================================================ fetus
class SlicePose:
    """Rigid in-plane motion of the fetus for one slice: rotation about the head centre, shift."""

    def __init__(self, theta: float, shift: np.ndarray, pivot: np.ndarray):
        self.rz = rot_z(theta)
        self.t = np.array([shift[0], shift[1], 0.0])
        self.pivot = np.asarray(pivot, float)

    def move(self, p: np.ndarray) -> np.ndarray:
        """World position (mm) of the rest-pose point ``p`` on this slice."""
        return self.rz @ (p - self.pivot) + self.pivot + self.t

    def local_transform(self, centre: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) with ``local = A @ world + b`` for a frame with rest pose (centre, rotation)."""
        a = rotation.T @ self.rz.T
        b = -a @ (self.pivot + self.t) + rotation.T @ (self.pivot - centre)
        return a, b


class SlabGrid:
    """Sub-plane coordinates of one slab and windows of fetal structures on it."""

    def __init__(self, grid: Grid, z: float, offsets: np.ndarray, thickness: float):
        self.grid = grid
        self.z = z
        self.zs = (z + offsets).astype(F32)
        self.half = 0.5 * thickness

    def window(self, world_centre: np.ndarray, radius: float):
        """Pixel window of a sphere (moved world centre, radius mm) if it meets the slab."""
        if abs(world_centre[2] - self.z) > radius + self.half:
            return None
        return self.grid.window(world_centre[0], world_centre[1], radius)

    def linear(self, win, alpha: np.ndarray, beta: float) -> np.ndarray:
        """``alpha . world + beta`` on the window's pixels of every sub-plane (n_sub, wx, wy)."""
        xs = self.grid.xs[win[0]] * F32(alpha[0])
        yz = self.grid.ys[win[1]][None, :] * F32(alpha[1]) + (self.zs * F32(alpha[2]) + F32(beta))[:, None]
        return xs[None, :, None] + yz[:, None, :]

    def coords(self, win, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local coordinates ``a @ world + b`` (n_sub, wx, wy) float32 of the window's pixels."""
        return tuple(self.linear(win, a[k], b[k]) for k in range(3))

    def cosine_sum(self, win, terms, a: np.ndarray, b: np.ndarray, ridge: float | None = None) -> np.ndarray:
        """Cosine field ``sum_k amp_k cos(w_k . local + phi_k)`` with ``local = a @ world + b``.

        Uses cos(u + v) = cos u cos v - sin u sin v with u depending on x only, so no
        transcendental function is evaluated on the full window. With ``ridge`` = c0 each term
        becomes ``|amp_k| max(cos - c0, 0) / (1 - c0)``: thin sheets (sulci) of height |amp_k|.
        """
        waves, phases, amps = terms
        xs = self.grid.xs[win[0]].astype(float)
        ys = self.grid.ys[win[1]].astype(float)
        out = None
        for w, ph, amp in zip(waves, phases, amps):
            alpha = a.T @ w
            beta = float(w @ b + ph)
            u = alpha[0] * xs
            v = alpha[1] * ys[None, :] + (alpha[2] * self.zs.astype(float) + beta)[:, None]
            cu, su = (amp * np.cos(u)).astype(F32), (amp * np.sin(u)).astype(F32)
            cv, sv = np.cos(v).astype(F32), np.sin(v).astype(F32)
            if ridge is not None:
                cu, su = np.abs(cu), np.abs(su) * F32(np.sign(amp))
            t = cu[None, :, None] * cv[:, None, :]
            t -= su[None, :, None] * sv[:, None, :]
            if ridge is not None:
                t -= F32(abs(amp) * ridge)
                np.maximum(t, F32(0.0), out=t)
                t *= F32(1.0 / (1.0 - ridge))
            if out is None:
                out = t
            else:
                out += t
        return out


def _relative(outer, inner):
    """``inner`` window (absolute slices) relative to ``outer``, or None if they do not overlap."""
    i0, i1 = max(inner[0].start, outer[0].start), min(inner[0].stop, outer[0].stop)
    j0, j1 = max(inner[1].start, outer[1].start), min(inner[1].stop, outer[1].stop)
    if i1 <= i0 or j1 <= j0:
        return None
    o0, o1 = outer[0].start, outer[1].start
    return slice(None), slice(i0 - o0, i1 - o0), slice(j0 - o1, j1 - o1)


def _prim_sdf(p: Prim, lx, ly, lz) -> np.ndarray:
    cx, cy, cz = (F32(v) for v in p.centre)
    if p.kind == "ell":
        return ellipsoid_sdf(lx - cx, ly - cy, lz - cz, p.size)
    r, z0, z1 = p.size
    return capsule_sdf(lx - cx, ly - cy, lz, z0, z1, r)


def _paint_prims(dst, prims, frame, slab: SlabGrid, gwin, lx, ly, lz, fine, inv_w, pose: SlicePose) -> None:
    """Paint frame-local primitives into ``dst`` (n_sub, wx, wy) covering window ``gwin``."""
    centre, rotation = frame
    for p in prims:
        bc, br = p.bound
        win = slab.window(pose.move(centre + rotation @ bc), br + slab.grid.spacing)
        if win is None:
            continue
        rel = _relative(gwin, win)
        if rel is None:
            continue
        d = _prim_sdf(p, lx[rel], ly[rel], lz[rel])
        value = p.value
        if p.tex:
            value = p.value + F32(p.tex) * fine[gwin][rel[1:]]
        _paint_layered(dst[rel], d, value, p.wall, p.wall_value, inv_w)


def _paint_group(sub, group: Group, slab: SlabGrid, pose: SlicePose, fine, inv_w) -> None:
    win = slab.window(pose.move(group.centre), group.radius + slab.grid.spacing)
    if win is None:
        return
    a, b = pose.local_transform(group.centre, group.rotation)
    lx, ly, lz = slab.coords(win, a, b)
    _paint_prims(sub[:, win[0], win[1]], group.prims, (group.centre, group.rotation), slab, win,
                 lx, ly, lz, fine, inv_w, pose)


def _paint_head(sub, fetus: Fetus, c: dict, slab: SlabGrid, pose: SlicePose, fine, inv_w):
    """Face, eyes, scalp, skull, extra-axial CSF and brain; returns (window, brain, head) or None.

    ``brain`` and ``head`` are boolean (n_sub, wx, wy): inside the brain (parenchyma, ventricles,
    cerebellum, brainstem) and inside the outer skull surface, per sub-plane.
    """
    h: Head = fetus.head
    centre, rotation = fetus.head_centre, fetus.head_rotation
    win = slab.window(pose.move(centre), fetus.head_radius + slab.grid.spacing)
    if win is None:
        return None
    a, b = pose.local_transform(centre, rotation)
    lx, ly, lz = slab.coords(win, a, b)
    dst = sub[:, win[0], win[1]]
    frame = (centre, rotation)
    _paint_prims(dst, h.outer, frame, slab, win, lx, ly, lz, fine, inv_w, pose)

    d_cer = ellipsoid_sdf(lx, ly, lz, h.semi)
    d_cer -= slab.cosine_sum(win, h.shape_terms, a, b)
    n = h.floor_normal
    np.maximum(d_cer, slab.linear(win, a.T @ n, float(n @ b) - h.floor_offset), out=d_cer)
    d_brain = d_cer.copy()
    extra = []
    for cen, semi, value in ((h.cerebellum_centre, h.cerebellum_semi, c["cerebellum"]),
                             (h.brainstem_centre, h.brainstem_semi, c["brainstem"])):
        pw = slab.window(pose.move(centre + rotation @ cen), float(semi.max()) + slab.grid.spacing)
        rel = None if pw is None else _relative(win, pw)
        if rel is None:
            continue
        d = ellipsoid_sdf(lx[rel] - F32(cen[0]), ly[rel] - F32(cen[1]), lz[rel] - F32(cen[2]), semi)
        np.minimum(d_brain[rel], d, out=d_brain[rel])
        extra.append((rel, d, value))

    t_csf = slab.cosine_sum(win, h.csf_terms, a, b)
    t_csf += F32(h.csf0)
    d_out = d_brain - t_csf
    composite(dst, ramp(d_out - F32(h.skull + h.scalp), inv_w), c["scalp"])
    head_in = d_out <= F32(h.skull)
    composite(dst, ramp(d_out - F32(h.skull), inv_w), c["skull"])
    composite(dst, ramp(d_out, inv_w), c["ext_csf"])

    d_fold = d_cer
    if h.fold_terms is not None:
        d_fold = d_cer + slab.cosine_sum(win, h.fold_terms, a, b, ridge=0.8)
    brain = np.full(d_cer.shape, F32(c["wm"]), dtype=F32)
    composite(brain, ramp(-(d_fold + F32(h.cortex + h.subplate)), inv_w), c["subplate"])
    composite(brain, ramp(-(d_fold + F32(h.cortex)), inv_w), c["cortex"])
    if h.fold_terms is not None:
        composite(brain, ramp(-d_fold, inv_w), c["ext_csf"])  # sulcal CSF
    for rel, d, value in extra:
        composite(brain[rel], ramp(d, inv_w), value)
    _paint_prims(brain, h.inner, frame, slab, win, lx, ly, lz, fine, inv_w, pose)
    fissure = ramp(np.abs(lx) - F32(h.fissure_width), inv_w)
    fissure *= ramp(-(lz + F32(0.1 * h.semi[2])), inv_w)
    fissure *= ramp(-(d_cer + F32(h.fissure_depth)), inv_w)
    composite(brain, fissure, c["ext_csf"])
    composite(dst, ramp(d_brain, inv_w), brain)
    return win, d_brain <= 0, head_in


def _union(windows):
    return (slice(min(w[0].start for w in windows), max(w[0].stop for w in windows)),
            slice(min(w[1].start for w in windows), max(w[1].stop for w in windows)))


def render_fetus(base: np.ndarray, anat: Anatomy, grid: Grid, s: int, fine: np.ndarray):
    """Paint the fetus of slice ``s`` over the maternal ``base`` (modified in place) with slab integration.

    Returns
    -------
    image : ndarray float32 (M, M)
        ``base`` with the slab average of the sub-planes where the fetus is.
    brain : ndarray uint8 (M, M)
        1 where the brain fills at least half of the slab.
    head : ndarray uint8 (M, M)
        1 where any sub-plane is inside the outer skull surface.
    """
    acq, fetus = anat.acq, anat.fetus
    z = float(acq.z_centres[s])
    slab = SlabGrid(grid, z, acq.sub_offsets(), acq.thickness_mm)
    pose = SlicePose(fetus.motion_theta[s], fetus.motion_shift[s], fetus.head_centre)
    inv_w = 1.0 / grid.edge
    m = grid.xs.size
    brain = np.zeros((m, m), np.uint8)
    head = np.zeros((m, m), np.uint8)
    windows = [slab.window(pose.move(g.centre), g.radius + grid.spacing) for g in fetus.body_groups]
    windows.append(slab.window(pose.move(fetus.head_centre), fetus.head_radius + grid.spacing))
    windows = [w for w in windows if w is not None]
    if not windows:
        return base, brain, head
    uw = _union(windows)
    sub = np.empty((acq.n_sub, m, m), F32)
    sub[:, uw[0], uw[1]] = base[uw]
    for group in fetus.body_groups:
        _paint_group(sub, group, slab, pose, fine, inv_w)
    res = _paint_head(sub, fetus, anat.contrast, slab, pose, fine, inv_w)
    if res is not None:
        win, brain_in, head_in = res
        brain[win] = (brain_in.sum(axis=0) * 2 >= acq.n_sub).astype(np.uint8)
        head[win] = head_in.any(axis=0).astype(np.uint8)
    base[uw] = sub[:, uw[0], uw[1]].mean(axis=0, dtype=F32)
    return base, brain, head
