"""Render ``instantmesh_cli/assets/example.png``: a rubber duck, ray-marched, on a transparent background.

The bundled example photo is made here, from nothing but this script, so that its
licence is the project's own (Apache-2.0) and anyone can check how it was made.
Run it from the repository root; the output is deterministic (no randomness)::

    python scripts/render_example_photo.py

Scene: signed distance functions (an ellipsoid body and tail, a sphere head, a flat
orange beak, dark eyes), a key light from the upper left, a fill and a rim light,
glossy highlights, ambient occlusion from the distance field, and a 3×3 supersampled
alpha so that the silhouette is smooth. The camera looks down 12° from the front
left, the way a product photo would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 384  # pixels per side of the output
SUPER = 3  # supersampling per axis: smooth edges, real fractional alpha
OUT = Path(__file__).resolve().parents[1] / "instantmesh_cli" / "assets" / "example.png"

YELLOW = np.array([1.0, 0.78, 0.12])
ORANGE = np.array([0.98, 0.42, 0.06])
EYE = np.array([0.04, 0.04, 0.05])


def _ellipsoid(p: np.ndarray, centre, radii) -> np.ndarray:
    # The usual bound for an ellipsoid's distance: exact on the surface, good enough to march.
    q = (p - np.asarray(centre)) / np.asarray(radii)
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / np.asarray(radii), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _sphere(p: np.ndarray, centre, radius: float) -> np.ndarray:
    return np.linalg.norm(p - np.asarray(centre), axis=-1) - radius


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def scene(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the duck and the material of the nearest part (0 body, 1 beak, 2 eye)."""
    body = _ellipsoid(p, (0.0, 0.0, 0.0), (1.0, 0.6, 0.72))
    tail = _ellipsoid(p, (-0.82, 0.28, 0.0), (0.34, 0.2, 0.28))
    head = _sphere(p, (0.52, 0.8, 0.0), 0.44)
    duck = _smooth_union(_smooth_union(body, tail, 0.22), head, 0.28)
    beak = _ellipsoid(p, (0.98, 0.7, 0.0), (0.3, 0.085, 0.22))
    eyes = np.minimum(_sphere(p, (0.82, 0.93, 0.26), 0.065), _sphere(p, (0.82, 0.93, -0.26), 0.065))
    d = np.minimum(np.minimum(duck, beak), eyes)
    material = np.where(d == beak, 1, np.where(d == eyes, 2, 0))
    return d, material


def _normals(p: np.ndarray) -> np.ndarray:
    e = 1e-3
    grads = []
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = e
        grads.append(scene(p + step)[0] - scene(p - step)[0])
    n = np.stack(grads, axis=-1)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)


def _camera(n: int) -> tuple[np.ndarray, np.ndarray]:
    # Azimuth from +z towards +x: the duck faces +x, so the camera sees its face and its left side.
    azimuth, elevation, distance, fov = np.radians(50.0), np.radians(12.0), 5.2, np.radians(30.0)
    eye = distance * np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    target = np.array([0.05, 0.25, 0.0])
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    s = (np.arange(n) + 0.5) / n * 2 - 1
    xs, ys = np.meshgrid(s, -s)
    half = np.tan(fov / 2)
    dirs = forward + xs[..., None] * half * right + ys[..., None] * half * up
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return np.broadcast_to(eye, dirs.shape).copy(), dirs


def render(size: int = SIZE, supersample: int = SUPER) -> Image.Image:
    n = size * supersample
    origin, direction = _camera(n)
    origin, direction = origin.reshape(-1, 3), direction.reshape(-1, 3)
    t = np.zeros(len(origin))
    hit = np.zeros(len(origin), bool)
    alive = np.ones(len(origin), bool)
    for _ in range(96):
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        d, _ = scene(origin[idx] + t[idx, None] * direction[idx])
        t[idx] += d
        done = d < 1e-4
        hit[idx[done]] = True
        alive[idx[done | (t[idx] > 12.0)]] = False
    rgb = np.zeros((len(origin), 3))
    idx = np.flatnonzero(hit)
    p = origin[idx] + t[idx, None] * direction[idx]
    _, material = scene(p)
    normal = _normals(p)
    view = -direction[idx]
    albedo = np.where(material[:, None] == 1, ORANGE, np.where(material[:, None] == 2, EYE, YELLOW))
    # Ambient occlusion: how much the distance field opens up along the normal.
    occlusion = np.zeros(len(p))
    for i in range(1, 6):
        h = 0.06 * i
        occlusion += (h - scene(p + normal * h)[0]) / (2.0**i)
    ambient = np.clip(1.0 - 3.0 * occlusion, 0.0, 1.0)[:, None]
    lights = (
        (np.array([-0.55, 0.75, 0.45]), 1.0),  # key: upper left, in front
        (np.array([0.7, 0.2, 0.6]), 0.32),  # fill: right
        (np.array([0.1, 0.5, -0.9]), 0.45),  # rim: behind
    )
    colour = 0.22 * albedo * ambient
    gloss = np.where(material == 2, 90.0, 40.0)[:, None]
    for direction_l, strength in lights:
        light = direction_l / np.linalg.norm(direction_l)
        diffuse = np.clip(normal @ light, 0.0, None)[:, None]
        half = light + view
        half /= np.linalg.norm(half, axis=-1, keepdims=True)
        specular = np.clip((normal * half).sum(-1, keepdims=True), 0.0, None) ** gloss
        colour += strength * (albedo * diffuse + 0.35 * specular)
    rgb[idx] = np.clip(colour, 0.0, 1.0) ** (1 / 1.15)
    # Average the supersamples with premultiplied colour: edges blend into nothing, not into black.
    alpha = hit.astype(float).reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    premult = (rgb * hit[:, None]).reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    colour_out = premult / np.maximum(alpha[..., None], 1e-9)
    rgba = np.concatenate([colour_out, alpha[..., None]], axis=-1)
    return Image.fromarray((np.clip(rgba, 0, 1) * 255).round().astype(np.uint8), "RGBA")


def main() -> int:
    image = render()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    image.save(OUT, optimize=True)
    print(OUT, f"{OUT.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
