"""A small, deterministic, SYNTHETIC stand-in for the Adience benchmark, in Adience's real layout.

What it owns: drawing procedural faces whose appearance carries a learnable age-group and gender
signal, and writing them exactly where and how the real dataset has them, so that the whole
pipeline (``reproduce.folds`` -> LMDBs -> training -> 10-crop evaluation) runs offline on it::

    <root>/fold_K_data.txt                                         K = 0..4, the 12-column format
    <root>/aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>    square, upright
    <root>/faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>   NOT square, tilted
    <root>/SYNTHETIC.json                                          generator settings + per-face truth

The fold files have the original header and all 12 tab-separated columns, subject-exclusive folds
(every ``user_id`` lives in one fold) and the awkward rows of the real files: off-grid ages such as
``(25, 23)`` (fold 0 only, as in Adience), ``(38, 42)``, ``(38, 48)``, ``(27, 32)``, ``(8, 23)``, bare
numbers and ``None``; genders ``u`` and empty; a few exactly duplicated rows.

The signal (what a net can learn; nothing here imitates real faces beyond a cartoon):

* age: a continuous "maturity" m = (group + jitter)/7 shrinks the eyes, raises them and lengthens
  the face; babies (group 0) have almost no hair and pink cheeks; from 38-43 on hair greys and
  forehead wrinkles appear (one more line per group), 60+ has white hair and cheek lines;
* gender (each cue imperfect on purpose): long hair hanging to the shoulders (10 % of the persons
  get the other sex's hair style), red lips (85 % of ``f``, 5 % of ``m``), thicker eyebrows
  (overlapping ranges) and, for half of the adult men, a beard shadow.
Everything else (skin and hair tone, background, clothes, lighting, pose, JPEG noise) is random.

Deterministic: the same ``seed`` and settings give byte-identical files (same OpenCV build).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folds import AGE_GROUPS, COARSE, FOLD_COLUMNS, FOLD_FILE, LANDMARK, N_FOLDS

CANVAS = 192            # side of the canonical drawing canvas (face centre at CANVAS/2)
ALIGNED_SPAN = 116      # canonical pixels covered by the aligned crop (face + some hair)

# Off-grid age strings and the group their faces are drawn as (None -> random group).
AWKWARD_AGES = {"(38, 42)": 5, "(38, 48)": 5, "(27, 32)": 4, "(8, 23)": 3, "35": 4, "22": 3,
                "3": 1, "13": 2, "55": 6, "None": None}
PAPER_TYPO_AGE = "(25, 23)"  # fold 0 only, drawn as group 4 (Q-D1: dropped from the age lists)


@dataclass
class Person:
    user_id: str
    face_id: int
    group: int | None       # true age group used for drawing (0..7)
    sex: str                # true sex used for drawing: "m" or "f"
    age_str: str            # what the fold file says
    gender_str: str         # what the fold file says ("m", "f", "u" or "")
    maturity: float
    skin: tuple
    hair: tuple
    long_hair: bool
    beard: bool
    red_lips: bool
    brows: int              # eyebrow thickness (pixels on the canvas)
    face_ratio_jitter: float


def _user_id(rng) -> str:
    return f"{int(rng.integers(1_000_000, 150_000_000))}@N{int(rng.integers(0, 10)):02d}"


def _image_name(rng) -> str:
    digits = int(rng.integers(5_000_000_000, 12_999_999_999))
    hexpart = "".join("0123456789abcdef"[int(i)] for i in rng.integers(0, 16, 10))
    return f"{digits}_{hexpart}_o.jpg"


def _blend(a, b, t):
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


SKINS = [(180, 200, 235), (150, 180, 225), (120, 155, 205), (90, 120, 170), (60, 85, 130), (170, 190, 220)]
HAIRS = [(20, 20, 25), (30, 45, 70), (40, 70, 110), (70, 120, 170), (35, 60, 140), (25, 30, 45)]


def _make_person(rng, user_id: str, face_id: int, group: int | None, sex: str, age_str: str,
                 gender_str: str) -> Person:
    g = int(rng.integers(0, 8)) if group is None else group
    maturity = float(np.clip((g + rng.uniform(-0.3, 0.3)) / 7.0, 0.0, 1.0))
    skin = tuple(int(c) for c in np.clip(np.array(SKINS[int(rng.integers(len(SKINS)))])
                                         + rng.integers(-12, 13, 3), 0, 255))
    hair = HAIRS[int(rng.integers(len(HAIRS)))]
    long_hair = (sex == "f") != (rng.random() < 0.1)
    beard = sex == "m" and g >= 4 and rng.random() < 0.5
    red_lips = rng.random() < (0.85 if sex == "f" else 0.05)
    brows = int(rng.integers(3, 6)) if sex == "m" else int(rng.integers(2, 4))
    return Person(user_id, face_id, g, sex, age_str, gender_str, maturity, skin, hair, long_hair, beard,
                  red_lips, brows, float(rng.uniform(-0.04, 0.04)))


def draw_face(person: Person, rng) -> np.ndarray:
    """The canonical CANVAS x CANVAS BGR drawing of one person (face centred, upright)."""
    import cv2

    s = CANVAS
    g, m = person.group, person.maturity
    bg = np.array(rng.integers(40, 220, 3), dtype=np.float32)
    bg2 = np.clip(bg + rng.integers(-60, 61, 3), 0, 255)
    ramp = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
    img = (bg * (1 - ramp) + bg2 * ramp).repeat(s, axis=1).astype(np.uint8)
    img = np.ascontiguousarray(img)
    aa = cv2.LINE_AA
    cx, cy = s // 2, s // 2 - 4
    fh = 44                                               # half face height
    fw = int(round(fh * (0.95 - 0.17 * m + person.face_ratio_jitter)))
    skin = person.skin
    grey = {5: 0.35, 6: 0.65, 7: 0.92}.get(g, 0.0)
    hair = _blend(person.hair, (200, 200, 205), grey)
    if g == 0:
        hair = _blend(hair, skin, 0.6)
    clothes = tuple(int(c) for c in rng.integers(0, 256, 3))
    # shoulders and neck
    cv2.ellipse(img, (cx, s + 10), (int(fw * 2.2), 60), 0, 180, 360, clothes, -1, aa)
    cv2.rectangle(img, (cx - fw // 2, cy + fh - 10), (cx + fw // 2, cy + fh + 30), skin, -1)
    # long hair behind the head, down to the shoulders
    if person.long_hair:
        cv2.rectangle(img, (cx - int(fw * 1.3), cy - fh // 2), (cx + int(fw * 1.3), cy + fh + 34), hair, -1)
        cv2.ellipse(img, (cx, cy - fh // 2), (int(fw * 1.3), int(fh * 0.8)), 0, 180, 360, hair, -1, aa)
    # hair crown (babies: a thin one)
    crown = 0.45 if g == 0 else 0.85
    cv2.ellipse(img, (cx, cy - int(fh * 0.25)), (int(fw * 1.1), int(fh * crown + 8)), 0, 180, 360, hair, -1, aa)
    # face
    cv2.ellipse(img, (cx, cy), (fw, fh), 0, 0, 360, skin, -1, aa)
    # hairline fringe over the forehead
    fringe = int(fh * (0.25 if g == 0 else 0.55))
    cv2.ellipse(img, (cx, cy - fh + fringe // 2 - 2), (int(fw * 0.98), fringe // 2 + 2), 0, 180, 360, hair, -1, aa)
    dark = _blend(skin, (20, 20, 40), 0.55)
    # beard shadow
    if person.beard:
        overlay = img.copy()
        cv2.ellipse(overlay, (cx, cy + int(fh * 0.35)), (int(fw * 0.95), int(fh * 0.65)), 0, 0, 180,
                    _blend(person.hair, (40, 40, 40), 0.3), -1, aa)
        img = cv2.addWeighted(overlay, 0.55, img, 0.45, 0)
    # eyes: large and low for the young, smaller and higher with maturity
    ey = cy + int(round(fh * (0.12 - 0.30 * m)))
    ex = int(round(fw * 0.42))
    er = max(3, int(round(fh * (0.20 - 0.11 * m))))
    iris = tuple(int(c) for c in rng.integers(20, 120, 3))
    for sx in (-1, 1):
        c = (cx + sx * ex, ey)
        cv2.ellipse(img, c, (er + 2, int(er * 0.75) + 1), 0, 0, 360, (245, 245, 245), -1, aa)
        cv2.circle(img, c, max(2, int(er * 0.6)), iris, -1, aa)
        cv2.circle(img, c, max(1, int(er * 0.25)), (10, 10, 10), -1, aa)
        brow_y = ey - er - 6
        thick = person.brows
        cv2.line(img, (c[0] - er - 3, brow_y), (c[0] + er + 3, brow_y), _blend(person.hair, (0, 0, 0), 0.3),
                 thick, aa)
    # nose and mouth
    ny = cy + int(fh * 0.28)
    cv2.line(img, (cx, ey + er), (cx - 3, ny), dark, 2, aa)
    my = cy + int(fh * 0.55)
    mw = int(fw * 0.38)
    if person.red_lips:
        cv2.ellipse(img, (cx, my), (mw, 6), 0, 0, 360, (70, 60, 200), -1, aa)
    else:
        cv2.ellipse(img, (cx, my - 4), (mw, 6), 0, 20, 160, dark, 3, aa)
    # babies: pink cheeks
    if g == 0:
        for sx in (-1, 1):
            cv2.circle(img, (cx + sx * int(fw * 0.55), cy + int(fh * 0.3)), 7, _blend(skin, (150, 120, 255), 0.5),
                       -1, aa)
    # wrinkles: one forehead line per group from 38-43 on, cheek lines from 48-53 on
    wr = _blend(skin, (30, 40, 60), 0.6)
    for i in range(max(0, g - 4)):
        y = ey - er - 14 - 6 * i
        cv2.line(img, (cx - int(fw * 0.5), y), (cx + int(fw * 0.5), y), wr, 2, aa)
    if g >= 6:
        for sx in (-1, 1):
            cv2.line(img, (cx + sx * int(fw * 0.3), ny - 4), (cx + sx * int(fw * 0.5), my + 6), wr, 2, aa)
    # lighting and sensor noise
    gain = rng.uniform(0.75, 1.2)
    noise = rng.normal(0, 4.0, img.shape)
    return np.clip(img.astype(np.float32) * gain + noise, 0, 255).astype(np.uint8)


def aligned_view(canvas: np.ndarray, size: int, rng) -> np.ndarray:
    """Landmark-aligned face: upright, centred, square ``size`` x ``size`` (small jitter only)."""
    import cv2

    scale = size / ALIGNED_SPAN * rng.uniform(0.97, 1.03)
    c = CANVAS / 2 + rng.uniform(-2, 2, 2)
    mat = np.array([[scale, 0, size / 2 - scale * c[0]], [0, scale, size / 2 - scale * c[1]]])
    return cv2.warpAffine(canvas, mat, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def coarse_view(canvas: np.ndarray, size: int, rng) -> tuple[np.ndarray, int]:
    """Coarse-tilt face: more context, tilted by up to 20 degrees, off-centre and NOT square."""
    import cv2

    h = int(round(size * rng.uniform(1.0, 1.35)))
    w = int(round(size * rng.uniform(0.7, 1.0)))
    if rng.random() < 0.3:
        h, w = w, h                                   # some wide ones too
    if h == w:
        w -= 1
    angle = float(rng.uniform(-20, 20))
    span = ALIGNED_SPAN * rng.uniform(1.15, 1.4)      # more context than the aligned crop
    scale = min(h, w) / span
    centre = (CANVAS / 2 + rng.uniform(-8, 8), CANVAS / 2 + rng.uniform(-8, 8))
    mat = cv2.getRotationMatrix2D(centre, angle, scale)
    mat[0, 2] += w / 2 - centre[0]
    mat[1, 2] += h / 2 - centre[1]
    img = cv2.warpAffine(canvas, mat, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return img, int(round(angle))


OFF_GRID_RANGES = ("(38, 42)", "(38, 48)", "(27, 32)", "(8, 23)")
BARE_NUMBERS = ("35", "22", "3", "13", "55")


def _awkward_labels(rng, fold: int, n_persons: int, fraction: float) -> dict[int, tuple[str, str]]:
    """person index -> ("age" | "gender", bad string); every fold gets at least one off-grid range
    (fold 0: the "(25, 23)" typo), one bare number, one "None", one "u" and one empty gender."""
    sure = [("age", PAPER_TYPO_AGE if fold == 0 else OFF_GRID_RANGES[fold % len(OFF_GRID_RANGES)]),
            ("age", BARE_NUMBERS[fold % len(BARE_NUMBERS)]), ("age", "None"), ("gender", "u"), ("gender", "")]
    n = min(n_persons, max(len(sure), int(round(fraction * n_persons))))
    chosen = rng.choice(n_persons, size=n, replace=False)
    ages = list(AWKWARD_AGES) + ([PAPER_TYPO_AGE] * 3 if fold == 0 else [])
    out = {}
    for j, idx in enumerate(chosen):
        if j < len(sure):
            out[int(idx)] = sure[j]
        elif rng.random() < 0.55:
            out[int(idx)] = ("age", ages[int(rng.integers(len(ages)))])
        else:
            out[int(idx)] = ("gender", "u" if rng.random() < 0.7 else "")
    return out


def generate(root, seed: int = 0, rows_per_fold: int = 100, users_per_fold: int = 10,
             image_size: int = 64, awkward_fraction: float = 0.12, jpeg_quality: int = 95) -> dict:
    """Write the synthetic dataset under ``root`` (see module docstring); returns a summary dict.

    ``rows_per_fold`` face rows are drawn per fold (before a few duplicate rows are appended);
    about ``awkward_fraction`` of the persons (at least five per fold) get an off-grid age or an
    unusable gender.
    """
    import cv2

    if rows_per_fold < 15 or users_per_fold < 1:
        raise ValueError("need rows_per_fold >= 15 and users_per_fold >= 1")
    root = Path(root)
    rng = np.random.default_rng(seed)
    used_users: set[str] = set()
    face_id = 0
    truth, counts = [], []
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    for k in range(N_FOLDS):
        users = []
        while len(users) < users_per_fold:
            u = _user_id(rng)
            if u not in used_users:
                used_users.add(u)
                users.append(u)
        # persons of this fold: balanced over age groups and sexes
        persons: list[Person] = []
        n_persons = min(rows_per_fold, max(users_per_fold, rows_per_fold // 3))
        awkward = _awkward_labels(rng, k, n_persons, awkward_fraction)
        for i in range(n_persons):
            combo = (i + 5 * k) % 16                       # cycles through all (group, sex) pairs
            group, sex = combo % 8, "mf"[combo // 8]
            age_str, gender_str = AGE_GROUPS[group], sex
            kind, value = awkward.get(i, (None, None))
            if kind == "age":
                age_str = value
                group = 4 if value == PAPER_TYPO_AGE else AWKWARD_AGES[value]
            elif kind == "gender":
                gender_str = value
            face_id += 1
            persons.append(_make_person(rng, users[i % users_per_fold], face_id, group, sex, age_str,
                                        gender_str))
        # rows: each person appears in >= 1 image; some images show two persons of the same user
        rows = []
        extra = rng.integers(0, len(persons), rows_per_fold - len(persons))
        order = list(persons) + [persons[int(j)] for j in extra]
        shared: dict[str, str] = {}
        for p in order:
            if p.user_id in shared and rng.random() < 0.3:
                image = shared.pop(p.user_id)      # a second face of the same photo
            else:
                image = _image_name(rng)
                shared[p.user_id] = image
            rows.append((p, image))
        lines = ["\t".join(FOLD_COLUMNS)]
        seen = set()
        for p, image in rows:
            if (p.user_id, image, p.face_id) in seen:    # same face twice in one photo: draw another
                image = _image_name(rng)
            seen.add((p.user_id, image, p.face_id))
            canvas = draw_face(p, rng)
            aligned = aligned_view(canvas, image_size, rng)
            coarse, tilt = coarse_view(canvas, image_size, rng)
            for folder, prefix, pic in (("aligned", LANDMARK, aligned), ("faces", COARSE, coarse)):
                path = root / folder / p.user_id / f"{prefix}.{p.face_id}.{image}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(path), pic, params):
                    raise OSError(f"{path}: could not be written")
            x, y = int(rng.integers(0, 1200)), int(rng.integers(0, 900))
            dx, dy = int(rng.integers(300, 1100)), int(rng.integers(300, 1100))
            fields = [p.user_id, image, str(p.face_id), p.age_str, p.gender_str, str(x), str(y), str(dx),
                      str(dy), str(tilt), str(int(rng.integers(-40, 41))), str(int(rng.integers(0, 140)))]
            lines.append("\t".join(fields))
            truth.append({"fold": k, "path": f"{p.user_id}/{{prefix}}.{p.face_id}.{image}",
                          "group": p.group, "sex": p.sex, "age": p.age_str, "gender": p.gender_str})
        # exact duplicate rows, as in the real files
        for j in rng.choice(np.arange(1, len(lines)), size=2, replace=False):
            lines.append(lines[int(j)])
        (root / FOLD_FILE.format(k=k)).parent.mkdir(parents=True, exist_ok=True)
        (root / FOLD_FILE.format(k=k)).write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts.append(len(lines) - 1)
    summary = {"generator": "reproduce.synthetic", "SYNTHETIC": True, "seed": seed,
               "rows_per_fold": rows_per_fold, "users_per_fold": users_per_fold, "image_size": image_size,
               "awkward_fraction": awkward_fraction, "rows": counts, "faces": truth}
    (root / "SYNTHETIC.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
