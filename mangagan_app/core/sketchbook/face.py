"""Drawing one anime character: back hair, body, face, eyes, front hair, accessories.

Everything is drawn with Pillow polygons at a multiple of the output size and then
downsampled, which gives clean anti-aliased lines. Parts that must stay inside
another part (iris inside the eye white, the highlight band inside the bangs) are
drawn on a copy and pasted back through the parent's mask.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from mangagan_app.core.attributes import Attributes
from mangagan_app.core.sketchbook.geometry import Pose, bezier, ellipse, mirror, ribbon
from mangagan_app.core.sketchbook.look import Look, sample_look
from mangagan_app.core.sketchbook.priors import hls_rgb, shade


def supersample(size: int) -> int:
    """Drawing scale for an output of ``size`` px: 4x for small ones, 3x above 128 px (speed)."""
    return 4 if size <= 128 else 3


class _Painter:
    """Draws the parts of one character onto ``image`` in face units via ``pose``."""

    def __init__(
        self, image: Image.Image, pose: Pose, attrs: Attributes, look: Look, coverage: Image.Image | None = None
    ):
        self.im = image
        self.d = ImageDraw.Draw(image, "RGBA")
        # Opaque parts are also drawn into ``coverage`` (mode L) so that a character drawn on
        # its own layer can be pasted over a scene; translucent parts lie inside opaque ones.
        self.cov = ImageDraw.Draw(coverage) if coverage is not None else None
        self.p = pose
        self.a = attrs
        self.k = look
        self.lw = max(1, round(pose.px(0.028 * look.line)))
        self.hair = hls_rgb(*look.hair)
        if look.hair[1] > 0.65:
            # Pale hair (white, silver, pink, blonde) gets deeper, more saturated shadows and a
            # dark outline: it reads against pale skin, and the detector misses it otherwise.
            self.hair_dark = shade(look.hair, -0.22, 0.15 if look.hair[2] < 0.4 else 0.0)
            self.hair_line = shade(look.hair, -0.55)
        else:
            self.hair_dark = shade(look.hair, -0.16 if look.hair[1] > 0.3 else -0.08)
            self.hair_line = shade(look.hair, -0.38 if look.hair[1] > 0.35 else -0.12)
        self.hair_light = shade(look.hair, +0.16 if look.hair[1] < 0.85 else 0.04, -0.1)
        self.skin = hls_rgb(*look.skin)
        self.skin_shadow = shade(look.skin, -0.09, +0.05, -0.015)
        self.skin_line = shade(look.skin, -0.45, -0.2, -0.02)

    # ---- primitives -----------------------------------------------------------------
    def fill_xy(self, xy, fill) -> None:
        self.d.polygon(xy, fill=fill)
        if self.cov is not None and len(fill) == 3:
            self.cov.polygon(xy, fill=255)

    def stroke_xy(self, xy, fill, width) -> None:
        width = max(1, round(width))
        self.d.line(xy, fill=fill, width=width, joint="curve")
        if self.cov is not None and len(fill) == 3:
            self.cov.line(xy, fill=255, width=width, joint="curve")

    def poly(self, pts, fill, outline=None, width=None, z=0.0):
        xy = self.p.pts(pts, z)
        self.fill_xy(xy, fill)
        if outline is not None:
            self.stroke_xy(xy + xy[:1], outline, width or self.lw)
        return xy

    def line(self, pts, fill, width=None, z=0.0):
        self.stroke_xy(self.p.pts(pts, z), fill, width or self.lw)

    def clipped(self, mask_polys, draw_fn):
        """Run ``draw_fn(draw)`` on a copy and paste it back inside the union of ``mask_polys``."""
        layer = self.im.copy()
        saved = self.d, self.cov
        self.d, self.cov = ImageDraw.Draw(layer, "RGBA"), None
        draw_fn()
        self.d, self.cov = saved
        mask = Image.new("L", self.im.size, 0)
        md = ImageDraw.Draw(mask)
        for xy in mask_polys:
            md.polygon(xy, fill=255)
        self.im.paste(layer, (0, 0), mask)

    # ---- hair behind the head ---------------------------------------------------------
    def cranium(self) -> list:
        vol = self.k.volume
        return ellipse(0.0, -0.5, 1.22 * vol, 1.28 * vol, n=40)

    def back_hair(self) -> None:
        style = self.a.choices["hair_style"]
        vol = self.k.volume
        if style == "twintails":
            self.twintails()
        elif style == "ponytail":
            self.ponytail()
        elif style == "drill":
            self.drills()
        bottom = {"long": 2.7, "short": 0.75, "twintails": 0.55, "ponytail": 0.45, "drill": 1.3}[style]
        spread = {"long": 1.5, "short": 1.2, "twintails": 1.12, "ponytail": 1.08, "drill": 1.3}[style] * vol
        right = bezier((1.2 * vol, -0.5), (1.3 * vol, 0.3), (spread, bottom - 0.6), (spread, bottom), 10)
        tips = []
        count = 5 if style == "long" else 4
        for i in range(count + 1):
            t = i / count
            u = spread * (1 - 2 * t)
            tips.append((u, bottom + (0.12 if i % 2 else -0.05)))
        shape = self.cranium()[30:] + self.cranium()[:11] + right + tips[1:-1] + mirror(right)
        self.poly(shape, self.hair, self.hair_line)
        # The hair seen between neck and side locks lies in shadow.
        inner = [(0.85, 0.2), (0.95, bottom - 0.1), (0.0, bottom - 0.2), (-0.95, bottom - 0.1), (-0.85, 0.2)]
        self.poly(inner, self.hair_dark)

    def twintails(self) -> None:
        for side in (-1.0, 1.0):
            root = (side * 0.95, -1.25)
            path = bezier(root, (side * 2.0, -1.2), (side * 1.95, 0.8), (side * 1.55, 2.6), 16)
            widths = [0.2 + 0.3 * math.sin(math.pi * min(1.0, t * 1.25)) for t in np.linspace(0, 1, 16)]
            widths[-1] = 0.03
            self.poly(ribbon(path, widths), self.hair, self.hair_line)
            # Shadow along the inner side and one strand line make it read as a tail of hair.
            inner = bezier((side * 1.25, -0.9), (side * 1.75, -0.5), (side * 1.7, 1.0), (side * 1.5, 2.4), 10)
            self.line(inner, self.hair_dark, self.lw * 2.5)
            self.poly(ellipse(root[0], root[1] + 0.05, 0.2, 0.2, 16), hls_rgb(*self.k.accent2), self.hair_line)

    def ponytail(self) -> None:
        side = self.k.tail_side
        root = (side * 0.55, -1.55)
        path = bezier(root, (side * 1.9, -1.9), (side * 2.1, 0.0), (side * 1.5, 2.2), 16)
        widths = [0.16 + 0.32 * math.sin(math.pi * min(1.0, t * 1.2)) for t in np.linspace(0, 1, 16)]
        widths[-1] = 0.03
        self.poly(ribbon(path, widths), self.hair, self.hair_line)
        inner = bezier((side * 1.0, -1.55), (side * 1.75, -1.2), (side * 1.85, 0.4), (side * 1.5, 1.9), 10)
        self.line(inner, self.hair_dark, self.lw * 2.5)

    def ponytail_tie(self) -> None:
        side = self.k.tail_side
        self.poly(ellipse(side * 0.62, -1.6, 0.17, 0.17, 14), hls_rgb(*self.k.accent2), self.hair_line)

    def drills(self) -> None:
        for side in (-1.0, 1.0):
            top_u, top_v = side * 1.15, -0.2
            for i in range(5):
                t = i / 4
                cu = top_u + side * 0.12 * t
                cv = top_v + 0.45 * i
                r = 0.36 - 0.06 * t
                lobe = ellipse(cu, cv, r, 0.28, 20, angle=side * 0.35)
                self.poly(lobe, self.hair, self.hair_line)
                # The spiral's shadow edge: a dark crescent on each coil.
                crescent = ellipse(
                    cu, cv + 0.04, r * 0.85, 0.2, 10, angle=side * 0.35, start=0.15 * math.pi, stop=0.85 * math.pi
                )
                self.line(crescent, self.hair_dark, self.lw * 2.2)
                self.line(
                    ellipse(cu - side * 0.1, cv - 0.1, r * 0.5, 0.08, 6, start=math.pi, stop=1.6 * math.pi),
                    self.hair_light,
                    self.lw * 1.6,
                )
            tip = [
                (top_u + side * 0.0, top_v + 2.0),
                (top_u + side * 0.33, top_v + 1.85),
                (top_u + side * 0.05, top_v + 2.35),
            ]
            self.poly(tip, self.hair, self.hair_line)

    # ---- body and face ----------------------------------------------------------------
    def body(self, bottom: float) -> None:
        neck = [(-0.34, 0.5), (0.34, 0.5), (0.37, 1.75), (-0.37, 1.75)]
        self.poly(neck, self.skin, self.skin_line)
        self.poly([(-0.34, 0.6), (0.34, 0.6), (0.35, 1.15), (0.0, 1.3), (-0.35, 1.15)], self.skin_shadow)
        bottom = max(bottom, 2.5)
        shoulder = bezier((0.36, 1.55), (0.8, 1.7), (1.9, 1.8), (2.6, 2.4), 10) + [(2.9, bottom), (0.0, bottom)]
        clothes = hls_rgb(*self.k.clothes)
        body = mirror(shoulder) + shoulder
        self.poly(body, clothes, shade(self.k.clothes, -0.3))
        trim = hls_rgb(0, 0.96, 0) if self.k.clothes[1] < 0.6 else hls_rgb(*self.k.accent)
        edge = shade(self.k.clothes, -0.3)
        if self.k.collar == 0:  # sailor collar
            self.poly([(-0.36, 1.6), (0.0, 2.25), (0.36, 1.6), (0.75, 1.72), (0.0, 2.6), (-0.75, 1.72)], trim, edge)
        elif self.k.collar == 1:  # round neckline showing the collarbone
            self.poly(bezier((-0.75, 1.7), (-0.5, 2.3), (0.5, 2.3), (0.75, 1.7), 12), self.skin, edge)
            self.line(bezier((-0.5, 2.0), (-0.3, 2.08), (-0.15, 2.05), (-0.08, 2.0), 6), self.skin_shadow)
            self.line(bezier((0.5, 2.0), (0.3, 2.08), (0.15, 2.05), (0.08, 2.0), 6), self.skin_shadow)
        else:  # shirt collar with a ribbon tie knot
            for d in (-1.0, 1.0):
                self.poly([(0.0, 1.95), (d * 0.42, 1.58), (d * 0.7, 1.8), (d * 0.3, 2.2)], trim, edge)
            self.poly(ellipse(0.0, 2.05, 0.12, 0.1, 12), hls_rgb(*self.k.accent2), edge)

    def face_outline(self) -> tuple[list, list]:
        """The face outline (temple, cheek, jaw, pointed chin) and each point's depth."""
        k = self.k
        fw = k.face_width
        right = bezier((1.0 * fw, -0.75), (1.03 * fw, 0.25), (k.jaw + 0.28, 0.78 * k.chin), (0.0, k.chin), 14)
        z = [0.0] * 10 + [0.25, 0.4, 0.5, 0.6]
        left = mirror(right)
        return right + left[1:], z + list(reversed(z))[1:]

    def face(self) -> None:
        for side in (-1.0, 1.0):
            self.poly(ellipse(side * 0.98, 0.1, 0.14, 0.22, 14), self.skin, self.skin_line)
        pts, z = self.face_outline()
        self.face_xy = self.p.pts(pts, z)
        self.fill_xy(self.face_xy, self.skin)
        # The forehead under the bangs is a plain block that stays inside the hair outline
        # (the deepest notch between bang strands is above v = -1.0).
        fw = 0.95 * self.k.face_width
        self.poly([(-fw, -0.7), (fw, -0.7), (fw, -1.1), (-fw, -1.1)], self.skin)
        self.stroke_xy(self.face_xy, self.skin_line, self.lw)

    def skin_details(self) -> None:
        # Cel shadow cast by the bangs onto the forehead.
        tips = self.bang_edge()
        band = [(u, v + 0.12) for u, v in tips] + [(u, v - 0.3) for u, v in reversed(tips)]
        self.clipped([self.face_xy], lambda: self.poly(band, self.skin_shadow, z=0.5))
        if "blush" in self.a.tags:
            for side in (-1.0, 1.0):
                cu = side * (self.k.eye_spacing + 0.1)
                self.poly(ellipse(cu, 0.42, 0.24, 0.1, 20), (255, 110, 130, 110), z=0.9)
                for i in range(3):
                    x0 = cu - 0.12 + 0.1 * i
                    self.line([(x0 + 0.05, 0.36), (x0 - 0.02, 0.48)], (230, 80, 100, 200), self.lw * 0.8, z=0.9)

    # ---- eyes, nose, mouth ------------------------------------------------------------
    def eye_shape(self, side: float) -> tuple[list, list, list]:
        k = self.k
        w = 0.235 * k.eye_size
        h = w * k.eye_height * (0.85 if "looking_down" in self.a.tags else 1.0)
        cu = side * k.eye_spacing
        inner = (cu - side * w * 0.95, 0.04)
        outer = (cu + side * w, -0.06 - k.eye_tilt)
        upper = bezier(inner, (inner[0], -h * 0.9), (outer[0] + side * 0.02, -h * 0.95), outer, 12)
        lower = bezier(outer, (outer[0], h * 0.55), (inner[0] + side * 0.06, h * 0.6), inner, 10)
        return upper, lower, [cu, w, h]

    def eyes(self) -> None:
        k = self.k
        shapes = [self.eye_shape(s) for s in (-1.0, 1.0)]
        scleras = []
        for upper, lower, _ in shapes:
            scleras.append(self.poly(upper + lower[1:-1], (255, 255, 255), z=1.0))
        dark_iris = shade(k.eye, -0.2, 0.05)
        mid_iris = hls_rgb(*k.eye)
        light_iris = shade(k.eye, +0.18, 0.0)

        def irises() -> None:
            for _, _, (cu, w, h) in shapes:
                iu, iv = cu + k.gaze[0] * w, 0.02 + k.gaze[1] * h * 2 + 0.04
                ru, rv = w * 0.68, h * 0.62
                self.poly(ellipse(iu, iv, ru, rv, 24), dark_iris, shade(k.eye, -0.35), z=1.0)
                self.poly(ellipse(iu, iv + rv * 0.2, ru * 0.8, rv * 0.72, 22), mid_iris, z=1.0)
                self.poly(ellipse(iu, iv + rv * 0.5, ru * 0.6, rv * 0.38, 18), light_iris, z=1.0)
                self.poly(ellipse(iu, iv - rv * 0.05, ru * 0.36, rv * 0.42, 16), shade(k.eye, -0.38, 0.0), z=1.0)
                self.poly(ellipse(iu, iv - rv * 0.9, ru * 1.1, rv * 0.35, 18), (0, 0, 0, 70), z=1.0)
                hl = -k.light
                self.poly(
                    ellipse(iu + hl * ru * 0.38, iv - rv * 0.38, ru * 0.34, rv * 0.26, 14), (255, 255, 255), z=1.0
                )
                self.poly(ellipse(iu - hl * ru * 0.4, iv + rv * 0.42, ru * 0.14, rv * 0.1, 10), (255, 255, 255), z=1.0)

        self.clipped(scleras, irises)
        lash = shade(self.k.hair, -0.45, -0.2) if self.k.hair[1] > 0.5 else (25, 18, 22)
        lash = tuple(int(0.4 * c + 0.6 * d) for c, d in zip(lash, (30, 20, 25), strict=True))
        for side, (upper, lower, (cu, w, h)) in zip((-1.0, 1.0), shapes, strict=True):
            n = len(upper)
            widths = [0.02 + 0.05 * (i / (n - 1) if side > 0 else 1 - i / (n - 1)) for i in range(n)]
            self.poly(ribbon(upper, widths), lash, z=1.0)
            outer = upper[-1] if side > 0 else upper[0]
            inner_end = upper[0] if side > 0 else upper[-1]
            flick = [
                (outer[0] - side * 0.06, outer[1] - 0.05),
                (outer[0] + side * 0.1, outer[1] - 0.1),
                (outer[0] + side * 0.02, outer[1] + 0.05),
            ]
            self.poly(flick, lash, z=1.0)
            self.line([inner_end, (inner_end[0] - side * 0.01, inner_end[1] + 0.03)], lash, self.lw, z=1.0)
            self.line(lower[1:6], shade(self.k.skin, -0.4, -0.1), self.lw * 0.9, z=1.0)
            # Eyebrow: a thin curve well above the eye, hair-tinted.
            bv = -h * 1.05 - 0.16
            brow = bezier(
                (cu - side * w * 0.9, bv + 0.05),
                (cu - side * w * 0.3, bv - 0.05),
                (cu + side * w * 0.5, bv - 0.05),
                (cu + side * w * 1.1, bv + 0.04),
                8,
            )
            self.line(brow, self.hair_line, self.lw * 1.1, z=1.0)

    def nose_mouth(self) -> None:
        k = self.k
        self.line([(0.02 * k.light, 0.42), (0.0, 0.47)], shade(k.skin, -0.3, -0.1), self.lw, z=1.3)
        mw = 0.15 * k.mouth_width
        mv = 0.76 if k.chin > 1.1 else 0.72
        line = shade(k.skin, -0.5, -0.1)
        if "open_mouth" in self.a.tags:
            if "smile" in self.a.tags:
                shape = bezier((-mw, mv - 0.03), (-mw * 0.7, mv + 0.24), (mw * 0.7, mv + 0.24), (mw, mv - 0.03), 12)
            else:
                shape = ellipse(0.0, mv + 0.05, mw * 0.7, 0.1, 16)
            self.poly(shape, (150, 45, 55), line, z=1.0)
            self.poly(ellipse(0.0, mv + 0.09, mw * 0.45, 0.04, 12), (235, 120, 130), z=1.0)
        elif "smile" in self.a.tags:
            # Wider than the neutral mouth and curved up at the corners, so it reads at 64 px.
            sw = mw * 1.25
            self.line(
                bezier((-sw, mv - 0.05), (-sw * 0.5, mv + 0.11), (sw * 0.5, mv + 0.11), (sw, mv - 0.05), 10),
                line,
                self.lw * 1.4,
                z=1.0,
            )
        else:
            self.line([(-mw * 0.6, mv + 0.02), (mw * 0.6, mv + 0.01)], line, self.lw * 1.1, z=1.0)

    # ---- hair in front ----------------------------------------------------------------
    def bang_edge(self) -> list:
        """The lower edge of the bangs, right to left: pointed strands, a blunt cut or a parting."""
        k = self.k
        n = k.bang_count + (3 if k.bang_style == 1 else 0)
        pts = []
        for i in range(n * 2 + 1):
            u = 1.02 * k.face_width * (1 - 2 * i / (n * 2))
            centre = 1 - abs(u) * 0.45
            if k.bang_style == 1:
                # Blunt ("hime") cut: an almost level edge with shallow notches.
                v = k.bang_depth + 0.03 if i % 2 else k.bang_depth - 0.1
            elif i % 2:
                v = k.bang_depth * centre + 0.06 * (1 - centre) + 0.04 * ((i * 7919) % 3 - 1)
            else:
                v = k.bang_depth - 0.35 - 0.08 * ((i * 104729) % 3)
            pts.append((u, v))
        if k.bang_style == 2:
            # Parted bangs: the strands near the parting are swept up, showing the forehead.
            lifted = [(u, v - 0.5 * max(0.0, 1 - abs(u - k.parting) / 0.45)) for u, v in pts]
            cut = next(i for i, (u, _) in enumerate(lifted) if u < k.parting)
            pts = lifted[:cut] + [(k.parting, k.bang_depth - 0.8)] + lifted[cut:]
        return pts

    def front_hair(self) -> None:
        k = self.k
        style = self.a.choices["hair_style"]
        vol = k.volume
        # Top of the head from the left temple over to the right temple, then the tips back.
        top = sorted((p for p in self.cranium() if p[1] < -0.55), key=lambda p: p[0])
        edge = self.bang_edge()
        outline = [(-1.2 * vol, -0.55)] + top + [(1.2 * vol, -0.55), (1.1 * k.face_width, -0.3)]
        bangs = outline + edge + [(-1.1 * k.face_width, -0.3)]
        self.side_locks(style)
        bangs_xy = self.poly(bangs, self.hair, z=[0.0] * len(outline) + [0.5] * len(edge) + [0.0])

        def bands() -> None:
            # Shadow band above the tips, then the highlight ("angel ring") across the crown.
            shadow = [(u, v - 0.02) for u, v in edge] + [(u, v - 0.28) for u, v in reversed(edge)]
            self.poly(shadow, self.hair_dark, z=0.5)
            # The ring: a smooth upper edge and a jagged lower edge, following the crown.
            ring_v = -1.22 + 0.05 * k.light
            upper, lower = [], []
            for i in range(13):
                a = -0.85 + 1.7 * i / 12
                v = ring_v + 0.5 * a * a
                upper.append((a * vol * 0.95, v - 0.06))
                lower.append((a * vol * 0.95, v + (0.13 if i % 2 else 0.03)))
            self.poly(upper + lower[::-1], self.hair_light, z=0.3)
            for u, v in edge[1::2]:
                self.line([(u * 0.7, v - 0.75), (u, v - 0.12)], self.hair_dark, self.lw * 0.9, z=0.4)

        self.clipped([bangs_xy], bands)
        self.stroke_xy(bangs_xy + bangs_xy[:1], self.hair_line, self.lw)

    def side_locks(self, style: str) -> None:
        k = self.k
        end = {"short": 0.75, "long": 1.35, "twintails": 1.0, "ponytail": 0.95, "drill": 1.1}[style]
        end += 0.4 * k.lock_length
        for side in (-1.0, 1.0):
            # The root starts under the bangs so only the hanging part shows.
            path = bezier(
                (side * 0.95 * k.face_width, -1.05),
                (side * 1.1, -0.1),
                (side * 0.98, end * 0.7),
                (side * 0.86, end),
                14,
            )
            widths = [0.2 - 0.18 * t**1.5 for t in np.linspace(0, 1, 14)]
            self.poly(ribbon(path, widths), self.hair, self.hair_line, z=0.15)
            self.line(path[4:11], self.hair_dark, self.lw * 0.9, z=0.15)

    # ---- accessories ------------------------------------------------------------------
    def glasses(self) -> None:
        colour = shade(self.k.accent, -0.15) if self.k.accent[1] < 0.9 else (40, 40, 50)
        w = 0.235 * self.k.eye_size
        h = w * self.k.eye_height
        for side in (-1.0, 1.0):
            cu = side * self.k.eye_spacing
            if self.k.glasses_round:
                rim = ellipse(cu, 0.0, w * 1.3, h * 0.9, 28)
            else:
                rim = [
                    (cu - w * 1.35, -h * 0.6),
                    (cu + w * 1.35, -h * 0.6),
                    (cu + w * 1.25, h * 0.75),
                    (cu - w * 1.25, h * 0.75),
                ]
            self.poly(rim, (200, 230, 255, 45), colour, self.lw * 1.3, z=1.0)
            self.line([(cu - w * 0.7, h * 0.3), (cu - w * 0.2, -h * 0.3)], (255, 255, 255, 170), self.lw, z=1.0)
            temple_u = side * (self.k.eye_spacing + w * 1.3)
            self.line([(temple_u, -h * 0.35), (side * 0.98, -h * 0.4)], colour, self.lw * 1.2, z=0.6)
        gap = self.k.eye_spacing - w * 1.3
        self.line([(-gap, -h * 0.1), (0.0, -h * 0.2), (gap, -h * 0.1)], colour, self.lw * 1.2, z=1.0)

    def cat_ears(self) -> None:
        vol = self.k.volume
        inner_col = shade(self.k.skin, -0.05, 0.3, -0.05) if "dark_skin" not in self.a.tags else (230, 150, 170)
        for side in (-1.0, 1.0):
            base_in, base_out = (side * 0.35 * vol, -1.6 * vol), (side * 1.05 * vol, -1.15 * vol)
            tip = (side * 1.05 * vol, -2.05 * vol)
            self.poly([base_in, tip, base_out], self.hair, self.hair_line, z=0.2)
            cin = [
                (base_in[0] * 0.8 + tip[0] * 0.2 + side * 0.08, base_in[1] * 0.8 + tip[1] * 0.2),
                (tip[0] * 0.85 + base_out[0] * 0.15 - side * 0.02, tip[1] * 0.8 + base_out[1] * 0.2),
                (base_out[0] * 0.75 + base_in[0] * 0.25, base_out[1] * 0.8 + base_in[1] * 0.2 - 0.05),
            ]
            self.poly(cin, inner_col, z=0.2)

    def hat(self) -> None:
        colour = hls_rgb(*self.k.accent)
        line = shade(self.k.accent, -0.3) if self.k.accent[1] > 0.3 else (90, 90, 100)
        vol = self.k.volume
        if self.k.hat_kind == 0:
            # Wide-brimmed sun/witch-style hat: a dome and a brim wider than the head.
            brim = ellipse(0.0, -1.25 * vol, 1.85 * vol, 0.32, 36)
            crown = bezier(
                (-1.0 * vol, -1.3 * vol), (-0.95 * vol, -2.3), (0.95 * vol, -2.3), (1.0 * vol, -1.3 * vol), 14
            )
            self.poly(brim, colour, line, z=0.2)
            self.poly(crown, colour, line, z=0.2)
            band = bezier(
                (-0.98 * vol, -1.42 * vol), (-0.6, -1.6 * vol), (0.6, -1.6 * vol), (0.98 * vol, -1.42 * vol), 10
            )
            self.line(band, hls_rgb(*self.k.accent2), self.lw * 4, z=0.2)
        else:
            # Beret pushed to one side: a puffy cap that covers the crown, with a darker band.
            s = self.k.ribbon_side or 1.0
            beret = ellipse(s * 0.2, -1.5 * vol, 1.38 * vol, 0.6, 36, angle=s * 0.12)
            self.poly(beret, colour, line, z=0.2)
            band = ellipse(s * 0.05, -1.12 * vol, 1.0 * vol, 0.16, 24, angle=s * 0.08)
            self.poly(band, shade(self.k.accent, -0.15), line, z=0.2)
            self.line(
                ellipse(s * 0.35, -1.6 * vol, 0.8, 0.25, 10, angle=s * 0.12, start=3.6, stop=5.4),
                shade(self.k.accent, +0.12),
                self.lw * 2,
                z=0.2,
            )

    def ribbon(self) -> None:
        s = self.k.ribbon_side
        vol = self.k.volume
        cu, cv = (s * 0.85 * vol, -1.45 * vol) if s else (0.0, -1.85 * vol)
        colour = hls_rgb(*self.k.accent2)
        line = shade(self.k.accent2, -0.35) if self.k.accent2[1] > 0.3 else (120, 120, 130)
        angle = s * 0.45
        c, sn = math.cos(angle), math.sin(angle)

        def rot(pts):
            return [(cu + u * c - v * sn, cv + u * sn + v * c) for u, v in pts]

        for d in (-1.0, 1.0):
            loop = [(0.0, 0.0), (d * 0.55, -0.32), (d * 0.62, 0.0), (d * 0.55, 0.3)]
            self.poly(rot(loop), colour, line, z=0.2)
            tail = [(d * 0.05, 0.05), (d * 0.3, 0.55), (d * 0.15, 0.6), (0.0, 0.1)]
            self.poly(rot(tail), colour, line, z=0.2)
        self.poly(rot(ellipse(0.0, 0.0, 0.11, 0.13, 12)), shade(self.k.accent2, -0.1), line, z=0.2)

    # ---- the whole character ------------------------------------------------------------
    def draw(self, body_bottom: float | None) -> None:
        self.back_hair()
        if body_bottom is not None:
            self.body(body_bottom)
        self.face()
        self.skin_details()
        self.eyes()
        self.nose_mouth()
        self.front_hair()
        if self.a.choices["hair_style"] == "ponytail":
            self.ponytail_tie()
        if "glasses" in self.a.tags:
            self.glasses()
        if "hat" in self.a.tags:
            self.hat()
        if "cat_ears" in self.a.tags:
            self.cat_ears()
        if "ribbon" in self.a.tags:
            self.ribbon()


def draw_character(
    image: Image.Image,
    pose: Pose,
    attrs: Attributes,
    look: Look,
    *,
    body_bottom: float | None = 3.6,
    coverage: Image.Image | None = None,
) -> None:
    """Draw one character onto the RGB ``image`` in place at ``pose``.

    The neck, shoulders and torso reach down to ``body_bottom`` (face units below
    the eye line); ``None`` draws the head alone. If given, ``coverage`` (mode L,
    same size) receives 255 wherever the character is drawn.
    """
    _Painter(image, pose, attrs, look, coverage).draw(body_bottom)


def paint_background(image: Image.Image, look: Look) -> None:
    """Fill ``image`` with the look's flat, gradient or patterned background."""
    w, h = image.size
    a, b = look.bg_colours
    d = ImageDraw.Draw(image)
    if look.background == "gradient":
        t = np.linspace(0, 1, h)[:, None, None]
        arr = (np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t).astype(np.uint8)
        image.paste(Image.fromarray(np.broadcast_to(arr, (h, w, 3)).copy()))
        return
    d.rectangle((0, 0, w, h), fill=a)
    step = max(4, int(w * (0.08 + 0.1 * look.bg_param)))
    if look.background == "stripes":
        for x in range(-h, w + h, step):
            d.polygon([(x, 0), (x + step // 2, 0), (x + step // 2 + h, h), (x + h, h)], fill=b)
    elif look.background == "dots":
        r = step // 5
        for y in range(0, h + step, step):
            for x in range((y // step) % 2 * step // 2, w + step, step):
                d.ellipse((x - r, y - r, x + r, y + r), fill=b)
    elif look.background == "checker":
        for y in range(0, h, step):
            for x in range(0, w, step):
                if (x // step + y // step) % 2:
                    d.rectangle((x, y, x + step, y + step), fill=b)


# Framing of a training crop: the face (two units wide) fills about half the square.
CROP_UNIT = 0.26
CROP_EYE_Y = 0.52


def crop_pose(size: int, look: Look) -> Pose:
    """The pose that frames a face as a training crop of ``size`` pixels."""
    return Pose(
        cx=size * (0.5 + look.offset[0]),
        cy=size * (CROP_EYE_Y + look.offset[1]),
        unit=size * CROP_UNIT * look.zoom,
        roll=look.roll,
        yaw=look.yaw,
        pitch=look.pitch,
    )


def render_face(attrs: Attributes, rng: np.random.Generator, size: int = 128) -> Image.Image:
    """Draw one anime face with exactly ``attrs``, framed as a square training crop.

    ``attrs`` must set every exclusive group of the vocabulary (as
    :func:`sample_attributes` does); everything the tags leave open comes from
    ``rng``, so the same attributes and generator state give the same pixels.
    Raises ``KeyError`` when a group is missing and ``ValueError`` for a size below 16.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    return render_look(attrs, sample_look(attrs, rng), size)


def render_look(attrs: Attributes, look: Look, size: int) -> Image.Image:
    """Draw ``attrs`` with the given :class:`Look` as a square crop of ``size`` pixels."""
    scale = supersample(size)
    big = size * scale
    canvas = Image.new("RGB", (big, big))
    paint_background(canvas, look)
    draw_character(canvas, crop_pose(big, look), attrs, look)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)
