"""Random anatomy of one synthetic fetal MRI volume: acquisition, mother, uterus, fetus, motion.

Everything here is *parameters* (numbers, small arrays); :mod:`phantom_render` turns them
into pixels. World coordinates are millimetres with the origin at the centre of the field of
view: x along the first array axis (left-right of the mother), y along the second (posterior
to anterior), z along the slice axis (inferior to superior).

The fetal head has its own frame: x left-right, y towards the face, z towards the vertex;
the cerebrum is an ellipsoid at its origin.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .phantom_geometry import (
    SPHERE_DIRS,
    cosine_field,
    eval_cosine_field,
    ellipsoid_sdf,
    frame_from_axis,
    random_rotation,
    random_unit,
    rot_x,
    rot_y,
    rot_z,
    unit,
)

#: T2 contrast of each tissue in [0, 1] before bias, noise and scaling (jittered per volume).
CONTRAST = {
    "skin": 0.50, "fat": 0.82, "muscle": 0.20, "organ": 0.33, "liver": 0.21, "kidney": 0.45,
    "kidney_sinus": 0.70, "vertebra": 0.30, "bone": 0.07, "disc": 0.60, "csf": 0.90,
    "bowel_fluid": 0.76, "bowel_gas": 0.05, "bowel_feces": 0.30, "bowel_wall": 0.20,
    "bladder": 0.95, "stomach": 0.80, "myometrium": 0.42, "placenta": 0.56, "fluid": 1.00,
    "fetal_skin": 0.46, "fetal_body": 0.36, "lung": 0.70, "heart": 0.10, "fetal_liver": 0.25,
    "fetal_fluid": 0.88, "fetal_bone": 0.13, "cord": 0.38, "scalp": 0.46, "skull": 0.09,
    "ext_csf": 0.95, "cortex": 0.33, "wm": 0.66, "subplate": 0.72, "deep_gm": 0.36,
    "ventricle": 0.93, "germinal": 0.30, "choroid": 0.30, "cerebellum": 0.40,
    "brainstem": 0.38, "face": 0.40, "eye": 0.92, "lens": 0.18,
}  # fmt: skip


@dataclass
class Prim:
    """One implicit structure in a group's local frame (axis-aligned in that frame).

    Attributes
    ----------
    kind : {"ell", "cap"}
        Ellipsoid with semi-axes ``size`` or capsule along local z: ``size = (radius, z0, z1)``.
    centre : ndarray (3,), mm
        Centre in the group frame (for a capsule, its x and y; z is ignored).
    value : float
        Contrast inside (after ``wall``).
    wall : float, mm
        Thickness of an inner rim painted with ``wall_value`` (0: none).
    tex : float
        Amplitude of the slice texture added to ``value``.
    """

    kind: str
    centre: np.ndarray
    size: tuple
    value: float
    wall: float = 0.0
    wall_value: float = 0.0
    tex: float = 0.0

    @property
    def bound(self) -> tuple[np.ndarray, float]:
        """Bounding sphere (centre in the group frame, radius mm)."""
        if self.kind == "ell":
            return np.asarray(self.centre, float), float(max(self.size))
        r, z0, z1 = self.size
        c = np.array([self.centre[0], self.centre[1], 0.5 * (z0 + z1)])
        return c, 0.5 * (z1 - z0) + r


@dataclass
class Group:
    """Rigid set of structures with a rest pose in world coordinates (moves with the fetus).

    ``rotation`` columns are the local axes in world coordinates; ``centre`` is the local origin.
    """

    name: str
    centre: np.ndarray
    rotation: np.ndarray
    radius: float
    prims: list[Prim] = field(default_factory=list)


@dataclass
class Acquisition:
    """Stack geometry. ``spacing_mm`` = ``fov_mm / matrix``; slices are centred on z = 0."""

    matrix: int
    fov_mm: float
    spacing_mm: float
    thickness_mm: float
    n_slices: int
    n_sub: int

    @property
    def z_centres(self) -> np.ndarray:
        """Slice-centre z coordinates (n_slices,), mm."""
        return (np.arange(self.n_slices) - (self.n_slices - 1) / 2.0) * self.thickness_mm

    def sub_offsets(self) -> np.ndarray:
        """z offsets (n_sub,) of the sub-planes that sample one slab uniformly, mm."""
        return ((np.arange(self.n_sub) + 0.5) / self.n_sub - 0.5) * self.thickness_mm


@dataclass
class Blob:
    """Axis-aligned maternal ellipsoid (organ, bowel loop) with an optional wall."""

    centre: np.ndarray
    semi: np.ndarray
    value: float
    wall: float = 0.0
    wall_value: float = 0.0
    tex: float = 0.0


@dataclass
class Mother:
    """Maternal abdomen, organs and uterus (static between slices)."""

    a_lat: float            # lateral semi-axis of the abdomen (mm), before the uterus bulge
    yc: float               # abdomen centre (y, mm)
    y_back: float           # skin at the back (y, mm)
    front_min: float        # smallest anterior semi-axis (mm)
    fat: np.ndarray         # (anterior, lateral, posterior) subcutaneous fat thickness, mm
    muscle: np.ndarray      # (anterior, lateral, posterior) abdominal wall muscle, mm
    y_spine: float          # vertebral body centre (y, mm)
    vertebra: np.ndarray    # vertebral body semi-axes (x, y), mm
    disc_period: float
    disc_phase: float
    blobs_below: list[Blob]  # organs inside the abdominal wall, drawn before the bowel
    bowel: list[Blob]
    blobs_above: list[Blob]  # back muscles, drawn over the abdominal wall
    uterus_centre: np.ndarray
    uterus_semi: np.ndarray
    uterus_rotation: np.ndarray
    uterus_wall: float
    placenta_centre: np.ndarray   # in the uterus frame
    placenta_semi: np.ndarray
    placenta_rotation: np.ndarray  # placenta frame in the uterus frame

    @property
    def cavity_semi(self) -> np.ndarray:
        return self.uterus_semi - self.uterus_wall

    def uterus_scale(self, z: float) -> float:
        """Approximate cross-section scale of the uterus at height z (0 when above or below)."""
        t = (z - self.uterus_centre[2]) / self.uterus_semi[2]
        return float(np.sqrt(max(0.0, 1.0 - t * t)))

    def outline(self, z: float) -> tuple[float, float, float]:
        """Lateral, anterior and posterior semi-axes (mm) of the abdomen at height z."""
        s = self.uterus_scale(z)
        a = max(self.a_lat, self.uterus_semi[0] * s + self.uterus_wall + self.muscle[1] + self.fat[1] + 6.0)
        front = max(self.front_min,
                    self.uterus_centre[1] + self.uterus_semi[1] * s + 8.0 + self.muscle[0] + self.fat[0] - self.yc)
        return a, front, self.yc - self.y_back


@dataclass
class Head:
    """Fetal head in its own frame (see module docstring)."""

    semi: np.ndarray          # cerebrum semi-axes (x, y, z), mm
    shape_terms: tuple        # cosine field perturbing the cerebrum surface (mm)
    csf0: float               # mean extra-axial CSF thickness, mm
    csf_terms: tuple          # cosine field added to csf0 (mm)
    skull: float
    scalp: float
    cortex: float
    subplate: float
    cerebellum_centre: np.ndarray
    cerebellum_semi: np.ndarray
    brainstem_centre: np.ndarray
    brainstem_semi: np.ndarray
    inner: list[Prim]         # deep grey matter, ventricles, fissures (painted inside the brain)
    outer: list[Prim]         # face and eyes (painted before the head layers)
    fissure_width: float
    fissure_depth: float
    floor_normal: np.ndarray  # anterior cranial fossa: the brain lies where normal . p <= floor_offset
    floor_offset: float
    fold_terms: tuple | None  # cosine ridges (sulci) folding the cortex (depth mm), None before ~23 weeks

    @property
    def outer_thickness_max(self) -> float:
        return self.csf0 + float(np.abs(self.csf_terms[2]).sum()) + self.skull + self.scalp

    def brain_sdf(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        """(cerebrum distance, whole-brain distance) at head-frame points (mm); cheap for few points."""
        d_cer = ellipsoid_sdf(x, y, z, self.semi) - eval_cosine_field(self.shape_terms, x, y, z)
        n = self.floor_normal
        d_cer = np.maximum(d_cer, x * n[0] + y * n[1] + z * n[2] - self.floor_offset)
        c, s = self.cerebellum_centre, self.cerebellum_semi
        d_cbl = ellipsoid_sdf(x - c[0], y - c[1], z - c[2], s)
        c, s = self.brainstem_centre, self.brainstem_semi
        d_bs = ellipsoid_sdf(x - c[0], y - c[1], z - c[2], s)
        return d_cer, np.minimum(d_cer, np.minimum(d_cbl, d_bs))


@dataclass
class Fetus:
    """Fetal pose, head, body groups and per-slice motion."""

    gestational_age_weeks: float
    ofd_mm: float
    bpd_mm: float
    head: Head
    head_centre: np.ndarray    # world, rest pose
    head_rotation: np.ndarray  # columns: head axes in world
    head_radius: float         # bounding radius of the head incl. face (mm)
    body_groups: list[Group]   # painted before the head, in order
    motion_theta: np.ndarray   # (n_slices,) in-plane rotation about the head centre, radians
    motion_shift: np.ndarray   # (n_slices, 2) in-plane shift, mm
    placement: str = "sampled"  # "fallback" when no pose fitted the uterus (body along its axis)


@dataclass
class Anatomy:
    """All parameters of one phantom volume."""

    acq: Acquisition
    mother: Mother
    fetus: Fetus
    contrast: dict
    bias: np.ndarray          # (3, 3): per axis (x, y, z) coefficients of exp(c1 t + c2 t^2 + c3 t^3)
    noise_sigma: float        # Rician noise level, relative to amniotic fluid = 1
    blur_mm: float            # in-plane Gaussian point-spread (standard deviation, mm)
    intensity_scale: float    # uint16 counts of contrast 1.0


# =============================================================================== sampling
@dataclass(frozen=True)
class AnatomyRanges:
    """The ranges of the draws that domain randomisation widens.

    The defaults are the paper cohort's (STUDY.md section 5), and with them every draw is the
    one :func:`sample_anatomy` always made: a cohort generated with ``AnatomyRanges()`` is the
    cohort generated without it, bit for bit.

    Attributes
    ----------
    fov_scale : (low, high)
        Field of view = ``scale x 512`` mm.
    thickness_mm : (low, high)
        Slice thickness (mm).
    n_slices : (low, high)
        Number of slices, both inclusive (unless the caller fixes it).
    gestational_age : (low, high)
        Weeks; the head grows with it (occipito-frontal diameter ``62 + 4 (ga - 20)`` mm).
    random_contrast : bool
        Every tissue's T2 intensity drawn uniform in [0.02, 1] (a label-map contrast, as
        SynthSeg draws one per label), instead of the T2 table jittered by +-8 %.
    bias_scale : float
        Multiplies the bias field's coefficients.
    noise : (low, high)
        Rician noise level relative to amniotic fluid.
    """

    fov_scale: tuple[float, float] = (0.55, 0.67)
    thickness_mm: tuple[float, float] = (6.5, 7.15)
    n_slices: tuple[int, int] = (36, 54)
    gestational_age: tuple[float, float] = (20.0, 30.0)
    random_contrast: bool = False
    bias_scale: float = 1.0
    noise: tuple[float, float] = (0.012, 0.035)


def sample_acquisition(rng: np.random.Generator, matrix: int, n_slices: int | None, n_sub: int,
                       ranges: AnatomyRanges = AnatomyRanges()) -> Acquisition:
    """Paper geometry by default: FOV 0.55-0.67 mm x 512, slices 6.5-7.15 mm, 36-54 slices."""
    fov = rng.uniform(*ranges.fov_scale) * 512
    thick = rng.uniform(*ranges.thickness_mm)
    n = int(rng.integers(ranges.n_slices[0], ranges.n_slices[1] + 1))
    if n_slices is not None:
        n = int(n_slices)
    return Acquisition(matrix, fov, fov / matrix, thick, n, n_sub)


def _jittered_contrast(rng: np.random.Generator) -> dict:
    keys = sorted(CONTRAST)
    jitter = rng.uniform(0.92, 1.08, len(keys))
    return {k: float(min(1.0, CONTRAST[k] * j)) for k, j in zip(keys, jitter)}


def _random_contrast(rng: np.random.Generator) -> dict:
    """Every tissue's intensity uniform in [0.02, 1]: no T2 order survives."""
    keys = sorted(CONTRAST)
    return {k: float(v) for k, v in zip(keys, rng.uniform(0.02, 1.0, len(keys)))}


def _uterus(rng, ofd: float, fov: float) -> tuple[np.ndarray, np.ndarray, float]:
    wall = rng.uniform(5.0, 9.0)
    cavity = np.array([ofd * 0.62 + rng.uniform(15, 30), ofd * 0.55 + rng.uniform(12, 25),
                       ofd * 1.2 + rng.uniform(25, 45)])
    semi = cavity + wall
    semi[0] = min(semi[0], 0.42 * fov)
    rotation = rot_z(rng.uniform(-0.15, 0.15)) @ rot_x(rng.uniform(-0.15, 0.15)) @ rot_y(rng.uniform(-0.1, 0.1))
    return semi, rotation, wall


def _placenta(rng, cavity: np.ndarray):
    """Placenta: flattened ellipsoid centred on the cavity surface (uterus frame)."""
    sides = np.array([[0, 1, 0], [0, -1, 0], [0, 0, 1], [1, 0, 0], [-1, 0, 0]], float)
    n = unit(sides[rng.integers(len(sides))] + 0.35 * rng.standard_normal(3))
    surface = n / np.sqrt(np.sum((n / cavity) ** 2))
    normal = unit(surface / cavity**2)
    rotation = frame_from_axis(normal, random_unit(rng))
    semi = np.array([rng.uniform(60, 90), rng.uniform(60, 90), rng.uniform(20, 34)])
    return surface, semi, rotation


def sample_mother(rng: np.random.Generator, acq: Acquisition, ofd: float, c: dict) -> Mother:
    """Maternal abdomen sized to hold a uterus grown for the fetus (head OFD ``ofd`` mm)."""
    half = acq.n_slices * acq.thickness_mm / 2
    fov = acq.fov_mm
    u_semi, u_rot, u_wall = _uterus(rng, ofd, fov)
    fat = np.array([rng.uniform(6, 20), rng.uniform(6, 20), rng.uniform(6, 16)])
    muscle = np.array([rng.uniform(4, 7), rng.uniform(5, 10), rng.uniform(5, 8)])
    a_lat = max(rng.uniform(0.36, 0.46) * fov, u_semi[0] + u_wall + muscle[1] + fat[1] + rng.uniform(6, 22))
    # posterior to anterior, before centring: back skin at 0
    y_back = 0.0
    y_spine = fat[2] + muscle[2] + rng.uniform(40, 48)
    yc = y_spine + 8.0
    u_centre = np.array([rng.uniform(-10, 10), y_spine + rng.uniform(22, 30) + u_semi[1],
                         rng.uniform(-0.2, 0.2) * half])
    front_min = rng.uniform(85, 110)
    front_max = max(yc + front_min, u_centre[1] + u_semi[1] + 8 + muscle[0] + fat[0])
    shift = -(y_back + front_max) / 2 + rng.uniform(-8, 8)
    y_back, y_spine, yc = y_back + shift, y_spine + shift, yc + shift
    u_centre[1] += shift

    vert = np.array([rng.uniform(18, 24), rng.uniform(13, 17)])
    side = rng.choice([-1.0, 1.0])
    below = [
        Blob(np.array([side * rng.uniform(40, 70), yc + rng.uniform(0, 30), half * rng.uniform(0.75, 1.1)]),
             np.array([rng.uniform(70, 90), rng.uniform(60, 80), rng.uniform(60, 90)]), c["liver"], tex=0.03),
        Blob(np.array([-side * rng.uniform(50, 70), yc + rng.uniform(20, 50), half * rng.uniform(0.6, 0.95)]),
             np.array([rng.uniform(30, 45), rng.uniform(25, 35), rng.uniform(35, 50)]), c["stomach"],
             wall=3.0, wall_value=c["bowel_wall"]),
    ]
    for sx in (-1.0, 1.0):
        centre = np.array([sx * rng.uniform(55, 75), y_spine + rng.uniform(5, 15), half * rng.uniform(0.25, 0.6)])
        semi = np.array([rng.uniform(22, 28), rng.uniform(18, 24), rng.uniform(45, 55)])
        below.append(Blob(centre, semi, c["kidney"], tex=0.03))
        below.append(Blob(centre - np.array([sx * 0.25 * semi[0], 0, 0]), semi * 0.45, c["kidney_sinus"]))
    above = []
    for sx in (-1.0, 1.0):
        below.append(Blob(np.array([sx * rng.uniform(33, 45), y_spine + rng.uniform(0, 8), -half]),
                          np.array([rng.uniform(14, 20), rng.uniform(12, 16), half * rng.uniform(1.0, 1.4)]),
                          c["muscle"]))
        above.append(Blob(np.array([sx * rng.uniform(24, 30), y_spine - rng.uniform(30, 36), 0.0]),
                          np.array([rng.uniform(18, 24), rng.uniform(13, 17), 10 * half]), c["muscle"], tex=0.05))
    below.append(Blob(np.array([rng.uniform(-10, 10), yc + rng.uniform(20, 50), -half * rng.uniform(0.8, 1.05)]),
                      np.array([rng.uniform(30, 45), rng.uniform(20, 32), rng.uniform(25, 40)]), c["bladder"],
                      wall=2.5, wall_value=c["bowel_wall"]))

    pl_centre, pl_semi, pl_rot = _placenta(rng, u_semi - u_wall)
    mother = Mother(a_lat, yc, y_back, front_min, fat, muscle, y_spine, vert, rng.uniform(28, 34),
                    rng.uniform(0, 34), below, [], above, u_centre, u_semi, u_rot, u_wall,
                    pl_centre, pl_semi, pl_rot)
    mother.bowel = _bowel_loops(rng, mother, half, c)
    return mother


def _bowel_loops(rng, mother: Mother, half: float, c: dict) -> list[Blob]:
    """Round and tubular bowel loops in the abdominal cavity, outside the uterus."""
    loops = []
    target = int(rng.integers(110, 170))
    for _ in range(target * 6):
        if len(loops) >= target:
            break
        z = rng.uniform(-1.1, 1.1) * half
        a, front, back = mother.outline(z)
        x = rng.uniform(-0.85, 0.85) * a
        y = rng.uniform(mother.y_spine + 15, mother.yc + front * 0.85)
        r = rng.uniform(4, 13)
        inner_a, inner_b = a - mother.fat[1] - mother.muscle[1], front - mother.fat[0] - mother.muscle[0]
        if (x / (inner_a - r)) ** 2 + ((y - mother.yc) / max(inner_b - r, 1.0)) ** 2 > 1:
            continue
        local = mother.uterus_rotation.T @ (np.array([x, y, z]) - mother.uterus_centre)
        if np.sum((local / (mother.uterus_semi + r)) ** 2) < 1.0:
            continue
        kind = rng.choice(3, p=[0.4, 0.25, 0.35])
        value = (c["bowel_fluid"], c["bowel_gas"], c["bowel_feces"])[kind]
        wall_value = c["bowel_wall"] if kind != 1 else c["organ"]
        semi = np.array([r * rng.uniform(0.8, 1.25), r * rng.uniform(0.8, 1.25), r * rng.uniform(1.0, 3.0)])
        loops.append(Blob(np.array([x, y, z]), semi, value, wall=rng.uniform(1.5, 3.0), wall_value=wall_value,
                          tex=0.12 if kind == 2 else 0.02))
    return loops


def sample_head(rng: np.random.Generator, ga: float, ofd: float, ci: float, c: dict) -> Head:
    """Skull layers, brain shape and internal structures for gestational age ``ga`` weeks."""
    skull, scalp = rng.uniform(1.5, 2.6), rng.uniform(1.5, 2.2)
    csf0 = rng.uniform(2.6, 3.6)
    layers = csf0 + skull + scalp
    ay = ofd / 2 - layers
    ax = ci * ofd / 2 - layers
    az = rng.uniform(0.86, 0.96) * ay
    semi = np.array([ax, ay, az])
    r = float(semi.mean())
    shape_terms = cosine_field(rng, 4, r, (1.0, 2.5), (0.01 * r, 0.03 * r))
    spare = min(csf0 - 2.0, 5.0 - csf0)
    csf_terms = cosine_field(rng, 2, r, (1.0, 3.0), (0.2 * spare, 0.5 * spare))
    vs = 1.25 * (1.0 + 0.3 * (25.0 - ga) / 5.0) + rng.uniform(-0.1, 0.3)  # ventricles relatively larger early
    inner: list[Prim] = []
    for sx in (-1.0, 1.0):
        inner.append(Prim("ell", np.array([sx * 0.14 * ax, -0.15 * ay, -0.15 * az]),
                          (0.14 * ax, 0.2 * ay, 0.16 * az), c["deep_gm"]))
        inner.append(Prim("ell", np.array([sx * 0.3 * ax, 0.12 * ay, -0.08 * az]),
                          (0.1 * ax, 0.18 * ay, 0.15 * az), c["deep_gm"] * 1.1))
    for sx in (-1.0, 1.0):
        body = np.array([sx * 0.2 * ax, 0.02 * ay, 0.12 * az])
        atrium = np.array([sx * 0.3 * ax, -0.48 * ay, 0.0])
        bsemi = np.array([0.09 * ax * vs + 1.0, 0.5 * ay, 0.1 * az * vs + 1.0])
        asemi = np.array([0.14 * ax * vs + 1.5, 0.22 * ay, 0.16 * az * vs + 1.5])
        for cen, sm in ((body, bsemi), (atrium, asemi)):
            inner.append(Prim("ell", cen, tuple(sm + 1.5), c["ventricle"], wall=1.5, wall_value=c["germinal"]))
        inner.append(Prim("ell", np.array([sx * 0.55 * ax, -0.1 * ay, -0.35 * az]),
                          (0.05 * ax * vs + 0.6, 0.25 * ay, 0.05 * az * vs + 0.6), c["ventricle"]))
        inner.append(Prim("ell", atrium.copy(), tuple(asemi * 0.5), c["choroid"]))
        inner.append(Prim("ell", np.array([sx * 0.96 * ax, 0.12 * ay, -0.12 * az]),
                          (0.12 * ax, 0.22 * ay, 0.06 * az), c["ext_csf"]))  # Sylvian fissure
    inner.append(Prim("ell", np.array([0.0, -0.1 * ay, -0.1 * az]), (0.03 * ax + 0.6, 0.2 * ay, 0.14 * az),
                      c["ventricle"]))  # third ventricle
    inner.append(Prim("ell", np.array([0.0, 0.2 * ay, 0.1 * az]), (0.05 * ax + 1.0, 0.1 * ay, 0.06 * az),
                      c["ventricle"]))  # cavum septi pellucidi
    cbl_c = np.array([0.0, -0.6 * ay, -0.55 * az])
    cbl_s = np.array([0.55 * ax, 0.3 * ay, 0.32 * az])
    inner.append(Prim("ell", np.array([0.0, -0.45 * ay, -0.5 * az]), (0.1 * ax, 0.06 * ay, 0.08 * az),
                      c["ventricle"]))  # fourth ventricle
    bs_c = np.array([0.0, -0.25 * ay, -0.7 * az])
    floor_n = unit([0.0, rng.uniform(0.45, 0.75), -1.0])
    floor_offset = rng.uniform(0.74, 0.82) * float(np.linalg.norm(floor_n * semi))  # cuts a small cap
    depth = float(np.clip((ga - 22.5) / 7.5, 0.0, 1.0)) * rng.uniform(3.0, 6.0)  # sulcal depth, mm
    fold = cosine_field(rng, 5, r, (4.0, 8.0), (0.6 * depth, depth)) if depth > 0.3 else None
    bs_s = np.array([0.16 * ax, 0.18 * ay, 0.5 * az])
    head = Head(semi, shape_terms, csf0, csf_terms, skull, scalp,
                rng.uniform(1.2, 2.0) + 0.03 * (ga - 20), (rng.uniform(2.0, 5.0) * (30 - ga) / 10 + 1.0),
                cbl_c, cbl_s, bs_c, bs_s, inner, [], rng.uniform(0.5, 0.9), rng.uniform(0.25, 0.4) * ay,
                floor_n, floor_offset, fold)
    head.outer = _face(rng, head, ofd, c)
    return head


def _face(rng, head: Head, ofd: float, c: dict) -> list[Prim]:
    """Face soft tissue and two eyes placed just outside the skull, in front of and below the brain."""
    ax, ay, az = head.semi
    r_eye = 0.06 * ofd * rng.uniform(0.9, 1.1)
    clearance = head.outer_thickness_max + r_eye + 1.0
    dx, dy, dz = rng.uniform(0.34, 0.42), rng.uniform(0.78, 0.86), -rng.uniform(0.5, 0.62)
    eyes = []
    for sx in (-1.0, 1.0):
        ray = np.array([sx * dx * ax, dy * ay, dz * az])
        for s in np.linspace(0.6, 2.5, 77):  # march outwards until the globe clears the head layers
            p = (ray * s).astype(np.float32)
            _, d = head.brain_sdf(p[0:1], p[1:2], p[2:3])
            if d[0] >= clearance:
                break
        eyes.append(ray * s)
    mid = 0.5 * (eyes[0] + eyes[1])
    face_c = mid + np.array([0.0, -0.1 * ay, -0.12 * az])
    face_s = (abs(eyes[0][0]) + r_eye + 5.0, r_eye + 0.1 * ay + 6.0, 0.25 * az + r_eye + 2.0)
    prims = [Prim("ell", face_c, face_s, c["face"], tex=0.04)]
    for e in eyes:
        prims.append(Prim("ell", e, (r_eye, r_eye, r_eye), c["eye"], wall=0.8, wall_value=c["face"] * 0.7))
        prims.append(Prim("ell", e + np.array([0.0, 0.7 * r_eye, 0.0]), (0.4 * r_eye, 0.18 * r_eye, 0.4 * r_eye),
                          c["lens"]))
    return prims


def _cavity_contains(mother: Mother, points: np.ndarray, margin: float = 2.0) -> bool:
    """True when every world point (k, 3) lies inside the uterine cavity shrunk by ``margin`` mm."""
    local = (points - mother.uterus_centre) @ mother.uterus_rotation
    return bool(np.all(np.sum((local / (mother.cavity_semi - margin)) ** 2, axis=1) < 1.0))


def _head_radius(head: Head) -> float:
    cran = float(head.semi.max() + np.abs(head.shape_terms[2]).sum() + head.outer_thickness_max)
    dirs = np.vstack([SPHERE_DIRS, np.eye(3), -np.eye(3)])
    outer = max(float(np.linalg.norm(p.centre + dirs * np.asarray(p.size), axis=1).max()) for p in head.outer)
    return max(cran, outer + 1.0)


def _trunk_group(rng, ofd: float, start: np.ndarray, direction: np.ndarray, anterior: np.ndarray,
                 c: dict) -> Group:
    """Fetal trunk: local z points to the head, y to the belly."""
    s = np.array([ofd * rng.uniform(0.38, 0.42), ofd * rng.uniform(0.34, 0.38), ofd * rng.uniform(0.72, 0.8)])
    centre = start + direction * s[2]
    rot = frame_from_axis(-direction, anterior)
    w, d, l = s
    prims = [
        Prim("ell", np.zeros(3), tuple(s), c["fetal_body"], wall=2.0, wall_value=c["fetal_skin"], tex=0.05),
        Prim("ell", np.array([-0.15 * w, 0.1 * d, 0.0]), (0.65 * w, 0.6 * d, 0.25 * l), c["fetal_liver"]),
        Prim("ell", np.array([-0.42 * w, -0.05 * d, 0.42 * l]), (0.36 * w, 0.55 * d, 0.3 * l), c["lung"]),
        Prim("ell", np.array([0.42 * w, -0.05 * d, 0.42 * l]), (0.36 * w, 0.55 * d, 0.3 * l), c["lung"]),
        Prim("ell", np.array([0.08 * w, 0.3 * d, 0.38 * l]), (0.3 * w, 0.35 * d, 0.22 * l), c["heart"]),
        Prim("ell", np.array([0.4 * w, 0.2 * d, 0.02 * l]), (0.16 * w, 0.2 * d, 0.12 * l), c["fetal_fluid"]),
        Prim("ell", np.array([0.0, 0.35 * d, -0.72 * l]), (0.18 * w, 0.22 * d, 0.12 * l), c["fetal_fluid"]),
        Prim("cap", np.array([0.0, -0.78 * d, 0.0]), (0.08 * w + 1.0, -0.85 * l, 0.95 * l), c["fetal_bone"]),
    ]
    return Group("trunk", centre, rot, float(s.max()) + 1.0, prims)


def _capsule_group(name: str, p0: np.ndarray, p1: np.ndarray, radius: float, value: float,
                   skin: float, bone: float | None) -> Group:
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    rot = frame_from_axis(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 * length else [1.0, 0.0, 0.0])
    prims = [Prim("cap", np.zeros(3), (radius, 0.0, length), value, wall=1.5, wall_value=skin)]
    if bone is not None:
        prims.append(Prim("cap", np.zeros(3), (0.35 * radius, 0.1 * length, 0.9 * length), bone))
    return Group(name, p0.copy(), rot, 0.5 * length + radius + 1.0, prims)


def _limbs(rng, mother: Mother, trunk: Group, ofd: float, c: dict) -> list[Group]:
    """Two arms and two legs of two segments each (elbow / knee bend), kept in the cavity."""
    s = trunk.prims[0].size
    groups = []
    specs = [("arm", 0.7, 0.075 * ofd + 2.0, 0.36, 0.33), ("leg", -0.8, 0.095 * ofd + 2.5, 0.45, 0.43)]
    for name, zrel, radius, l1, l2 in specs:
        for sx in (-1.0, 1.0):
            attach = trunk.centre + trunk.rotation @ np.array([sx * 0.75 * s[0], 0.1 * s[1], zrel * s[2]])
            for _ in range(12):
                d1 = unit(trunk.rotation @ np.array([sx, 0.6, -0.3]) + 0.9 * random_unit(rng))
                knee = attach + d1 * l1 * ofd
                d2 = unit(d1 + 1.2 * random_unit(rng))
                end = knee + d2 * l2 * ofd
                if _cavity_contains(mother, np.stack([knee, end]), margin=radius):
                    break
            else:
                knee = attach + d1 * 0.5 * l1 * ofd
                end = knee
            groups.append(_capsule_group(f"{name}_upper", attach, knee, radius, c["fetal_body"],
                                         c["fetal_skin"], c["fetal_bone"]))
            if np.linalg.norm(end - knee) > 1.0:
                groups.append(_capsule_group(f"{name}_lower", knee, end, radius * 0.85, c["fetal_body"],
                                             c["fetal_skin"], c["fetal_bone"]))
    return groups


def _cord(rng, mother: Mother, start: np.ndarray, c: dict) -> list[Group]:
    """A few umbilical cord segments floating in the fluid (small round confounders)."""
    groups, p = [], start
    radius = rng.uniform(5.0, 7.5)
    for k in range(int(rng.integers(4, 10))):
        for _ in range(10):
            q = p + random_unit(rng) * rng.uniform(20, 35)
            if _cavity_contains(mother, q[None], margin=radius):
                break
        else:
            break
        groups.append(_capsule_group(f"cord{k}", p, q, radius, c["cord"], c["cord"] * 0.7, None))
        p = q
    return groups


def _motion(rng, n: int, max_shift: float, max_theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved-acquisition random walk of in-plane shift (mm) and rotation (rad) with jumps."""
    order = np.r_[np.arange(0, n, 2), np.arange(1, n, 2)]
    if rng.random() < 0.5:
        order = np.r_[np.arange(1, n, 2), np.arange(0, n, 2)]
    sig_t, sig_r = rng.uniform(0.2, 1.2), np.deg2rad(rng.uniform(0.2, 1.2))
    p_jump = rng.uniform(0.0, 0.1)
    shift, theta = np.zeros((n, 2)), np.zeros(n)
    t, r = np.zeros(2), 0.0
    for idx in order:
        t = t + rng.normal(0, sig_t, 2)
        r = r + rng.normal(0, sig_r)
        if rng.random() < p_jump:
            t = t + random_unit(rng)[:2] * rng.uniform(2, 6)
            r = r + np.deg2rad(rng.uniform(-6, 6))
        norm = np.linalg.norm(t)
        if norm > max_shift:
            t = t * (max_shift / norm)
        r = float(np.clip(r, -max_theta, max_theta))
        shift[idx], theta[idx] = t, r
    return theta, shift


def sample_fetus(rng: np.random.Generator, acq: Acquisition, mother: Mother, ga: float, ofd: float,
                 ci: float, c: dict, central_mm: float = 250.0) -> Fetus:
    """Head pose (any rotation), position in the uterus, body, limbs, cord and motion."""
    head = sample_head(rng, ga, ofd, ci, c)
    radius = _head_radius(head)
    max_shift = rng.uniform(3.0, 8.0)
    half = acq.n_slices * acq.thickness_mm / 2
    z_lim = half - acq.thickness_mm - radius
    xy_lim = central_mm / 2 - radius - max_shift - 1.0
    neck_local = np.array([0.0, -0.25 * head.semi[1], -0.85 * head.semi[2]])
    neck_dir = unit([0.0, -0.35, -1.0])
    cran_r = float(head.semi.max() + head.outer_thickness_max)
    axis = mother.uterus_rotation[:, 2]
    cav = mother.cavity_semi
    s2 = 0.76 * ofd  # trunk semi-length (see _trunk_group)
    best = None
    for attempt in range(800):
        # longitudinal lie: the trunk runs roughly along the uterus, head at one end
        sign = 1.0 if rng.random() < 0.5 else -1.0
        direction = unit(sign * axis + 0.35 * random_unit(rng))
        rot = random_rotation(rng)
        if (rot @ neck_dir) @ direction < 0.0:  # turn the skull base towards the body
            rot = rot @ rot_x(np.pi)
        offset = np.array([rng.uniform(-0.5, 0.5) * cav[0], rng.uniform(-0.5, 0.5) * cav[1],
                           -sign * rng.uniform(0.7, 1.0) * max(cav[2] - cran_r - 3.0, 0.0)])
        centre = mother.uterus_centre + mother.uterus_rotation @ offset
        if abs(centre[2]) > z_lim or np.any(np.abs(centre[:2]) > xy_lim):
            continue
        pts = centre + cran_r * SPHERE_DIRS
        face = [centre + rot @ p.centre for p in head.outer]
        if not _cavity_contains(mother, np.vstack([pts, face])):
            continue
        neck = centre + rot @ neck_local
        start = neck + direction * 0.12 * ofd
        ends = start + direction * np.array([[0.3 * s2], [s2], [1.7 * s2]])
        if _cavity_contains(mother, ends, margin=0.2 * ofd):
            best = (rot, centre, neck, start, direction)
            break
    placement = "sampled" if best is not None else "fallback"
    if best is None:  # cramped uterus: head at the lower end of the cavity, body along its axis
        rot = random_rotation(rng)
        if (rot @ neck_dir) @ axis < 0.0:
            rot = rot @ rot_x(np.pi)
        centre = mother.uterus_centre - axis * max(cav[2] - cran_r - 3.0, 0.0)
        centre[2] = np.clip(centre[2], -max(z_lim, 0.0), max(z_lim, 0.0))
        centre[:2] = np.clip(centre[:2], -max(xy_lim, 0.0), max(xy_lim, 0.0))
        neck = centre + rot @ neck_local
        best = (rot, centre, neck, neck + axis * 0.12 * ofd, axis)
    rot, centre, neck, start, direction = best
    trunk = _trunk_group(rng, ofd, start, direction, rot[:, 1], c)
    neck_group = _capsule_group("neck", neck, start + direction * 0.1 * ofd, 0.22 * ofd, c["fetal_body"],
                                c["fetal_skin"], None)
    limbs = _limbs(rng, mother, trunk, ofd, c)
    belly = trunk.centre + trunk.rotation @ np.array([0.0, trunk.prims[0].size[1] + 4.0, -0.3 * trunk.prims[0].size[2]])
    cord = _cord(rng, mother, belly, c)
    theta, shift = _motion(rng, acq.n_slices, max_shift, np.deg2rad(rng.uniform(2.0, 10.0)))
    return Fetus(ga, ofd, ci * ofd, head, centre, rot, radius, [trunk, *limbs, *cord, neck_group], theta, shift,
                 placement)


def sample_anatomy(rng: np.random.Generator, matrix: int = 512, n_slices: int | None = None,
                   n_sub: int = 3, ranges: AnatomyRanges = AnatomyRanges()) -> Anatomy:
    """Draw every parameter of one volume; the draws do not depend on ``matrix``.

    ``ranges`` widens some draws (domain randomisation, :class:`AnatomyRanges`); its defaults
    make the paper cohort's draws.
    """
    acq = sample_acquisition(rng, matrix, n_slices, n_sub, ranges)
    c = _random_contrast(rng) if ranges.random_contrast else _jittered_contrast(rng)
    ga = rng.uniform(*ranges.gestational_age)
    ofd = (62.0 + 4.0 * (ga - 20.0)) * rng.uniform(0.96, 1.04)
    ci = rng.uniform(0.76, 0.86)
    mother = sample_mother(rng, acq, ofd, c)
    fetus = sample_fetus(rng, acq, mother, ga, ofd, ci, c)
    bias = rng.uniform(-1, 1, (3, 3)) * np.array([0.18, 0.06, 0.04])
    if ranges.bias_scale != 1.0:
        bias = bias * ranges.bias_scale
    noise = rng.uniform(*ranges.noise)
    return Anatomy(acq, mother, fetus, c, bias, noise, rng.uniform(0.3, 0.8), rng.uniform(600.0, 1600.0))
