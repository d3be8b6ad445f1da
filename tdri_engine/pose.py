"""PoseExtractor: OpenPose keypoints from round 0's image, a pose map, and its smoothing G_sigma.

Paper, section 3.1: a pose estimator extracts keypoints K from I_0; a Gaussian smoothing G_sigma
widens their influence, and the smoothed map conditions every later round through the pose
ControlNet. When nobody is found the session says so and continues without the constraint.

Weights are never unpickled: the body network (controlnet_aux's ``bodypose_model``) gets its
state dict from ``body_pose_model.safetensors``, or from the original ``body_pose_model.pth``
(lllyasviel/Annotators) read with ``torch.load(weights_only=True)``, which only accepts tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import BadInput, ModelBroken, ModelRefused
from .events import CancelToken

N_KEYPOINTS = 18  # OpenPose COCO body layout
DRAW_SIZE = 512  # pose maps are drawn at ControlNet's training resolution, then resized

Keypoint = tuple[float, float, float]  # (x, y, confidence); x, y in 0..1; confidence 0 = not seen
Person = list[Keypoint]
# The detector seam: image -> people, each 18 normalised keypoints. The default runs OpenPose;
# tests and other estimators may pass their own callable to PoseExtractor.
Detector = Callable[[Image.Image], list[Person]]


def _openpose_modules() -> tuple[Any, Any, Any]:
    """(bodypose_model, Body, util) from controlnet_aux, importing quietly.

    Why quietly: importing controlnet_aux imports every annotator it has and warns about
    optional packages (mediapipe, timm paths) that OpenPose does not use.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.open_pose import util
        from controlnet_aux.open_pose.body import Body
        from controlnet_aux.open_pose.model import bodypose_model
    return bodypose_model, Body, util


def bodypose_model_class() -> type:
    return _openpose_modules()[0]


def _read_body_state(folder: Path, filename: str | None) -> dict[str, Any]:
    import torch

    names = [filename] if filename else ["body_pose_model.safetensors", "body_pose_model.pth"]
    for name in names:
        file = folder / name
        if not file.is_file():
            continue
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        # The original checkpoint is a plain dict of tensors: weights_only refuses anything else.
        import pickle

        fix = (
            "Use the original body_pose_model.pth from lllyasviel/Annotators, or a "
            "body_pose_model.safetensors converted from it."
        )
        try:
            return torch.load(str(file), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # an unsafe or foreign pickle: refused, not executed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelRefused(
                f"The pose model {file} was refused: it is not a plain tensor checkpoint, and "
                f"torch.load(weights_only=True) would not unpickle it ({first}).",
                fix,
            ) from exc
        except Exception as exc:  # truncated or not a checkpoint at all
            raise ModelBroken(f"The pose model {file} could not be read ({exc}).", fix) from exc
    raise ModelBroken(
        f"No pose weights in {folder} (looked for {', '.join(names)}).",
        "Copy body_pose_model.pth (lllyasviel/Annotators) or body_pose_model.safetensors into that folder.",
    )


class OpenPoseBody:
    """controlnet_aux's body estimator, built without its pickle-loading constructor."""

    def __init__(self, model: Any, device: Any) -> None:
        _, Body, _ = _openpose_modules()
        self._body = Body.__new__(Body)  # Body.__init__ would torch.load a path itself
        self._body.model = model.to(device).eval()
        self.device = device

    def __call__(self, image: Image.Image) -> list[Person]:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        h, w = rgb.shape[:2]
        bgr = rgb[:, :, ::-1].copy()  # the network was trained on BGR (OpenCV) images
        import torch

        with torch.no_grad():
            candidate, subset = self._body(bgr)
        people = []
        for body in self._body.format_body_result(candidate, subset):
            person = [
                (float(k.x) / w, float(k.y) / h, float(max(k.score, 1e-3)))
                if k is not None
                else (0.0, 0.0, 0.0)
                for k in body.keypoints
            ]
            people.append(person)
        return people


def load_openpose(path: Path, spec: Any, device: Any, dtype: Any) -> OpenPoseBody:
    """Model loader for kind ``openpose`` (see ``tdri_engine.models``)."""
    from .trust import check_spec

    check_spec(path, spec, "pose")  # options.filename must name a .safetensors/.pth in the folder
    import torch

    state = _read_body_state(Path(path), spec.options.get("filename"))  # refused before the network
    bodypose_model, _, util = _openpose_modules()
    model = bodypose_model()
    own = model.state_dict()
    if set(state) != set(own):  # original checkpoints name layers without the block prefix
        state = util.transfer(model, state)
    # The post-processing feeds float32 numpy arrays; keep the (small) network in float32.
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return OpenPoseBody(model, device)


# --------------------------------------------------------------------------------------------
# Pose maps and smoothing


def draw_pose_map(people: Sequence[Person], width: int, height: int) -> Image.Image:
    """The OpenPose skeleton picture ControlNet was trained on, at ``width`` x ``height``."""
    import cv2

    _, _, util = _openpose_modules()
    from controlnet_aux.open_pose.body import Keypoint as AuxKeypoint

    scale = DRAW_SIZE / max(width, height)
    cw, ch = max(1, round(width * scale)), max(1, round(height * scale))
    canvas: np.ndarray = np.zeros((ch, cw, 3), dtype=np.uint8)
    for person in people:
        points = [AuxKeypoint(x, y, c) if c > 0 else None for x, y, c in person]
        canvas = util.draw_bodypose(canvas, points)
    if (cw, ch) != (width, height):
        canvas = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return Image.fromarray(canvas)


def _round_keeping_sum(values: np.ndarray) -> np.ndarray:
    """Round to integers so the total is kept exactly (largest remainders get the +1)."""
    floor = np.floor(values)
    deficit = int(round(float(values.sum() - floor.sum())))
    if deficit > 0:
        frac = (values - floor).ravel()
        top = np.argpartition(-frac, deficit - 1)[:deficit]
        flat = floor.ravel()
        flat[top] += 1
        floor = flat.reshape(values.shape)
    return floor


def smooth_pose_map(pose_map: Image.Image, sigma: float) -> Image.Image:
    """G_sigma: Gaussian smoothing per channel that widens the map and keeps its total intensity.

    Reflecting borders keep the mass inside the image; rounding keeps the per-channel sum
    exactly. sigma = 0 returns the map unchanged.
    """
    from scipy import ndimage

    if sigma < 0:
        raise BadInput(f"The pose smoothing sigma must be >= 0, got {sigma}.", "Set pose_sigma to 0 or more.")
    rgb = pose_map.convert("RGB")
    if sigma == 0:
        return rgb.copy()
    arr = np.asarray(rgb, dtype=np.float64)
    out = np.empty_like(arr)
    for c in range(arr.shape[2]):
        blurred = ndimage.gaussian_filter(arr[:, :, c], sigma=sigma, mode="reflect")
        out[:, :, c] = _round_keeping_sum(blurred)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# The extractor


@dataclass(frozen=True)
class PoseResult:
    found: bool
    keypoints: list[Person] = field(default_factory=list)  # per person, 18 x (x, y, conf), normalised
    pose_map: Image.Image | None = None  # the skeleton as drawn
    smoothed: Image.Image | None = None  # G_sigma(pose_map): what conditions later rounds
    message: str = ""


MIN_VISIBLE = 2  # a limb needs two keypoints; fewer is not a usable pose


class PoseExtractor:
    """Keypoints, pose map and smoothed pose map of an image.

    ``detector`` is the seam for other estimators (and for tests): a callable taking a PIL
    image and returning people as lists of 18 ``(x, y, confidence)`` with x, y in 0..1.
    Without one, the profile's ``pose`` role (OpenPose) is loaded from the registry.
    """

    def __init__(self, registry: Any, settings: Any, detector: Detector | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.detector = detector

    def _detect(self, image: Image.Image) -> list[Person]:
        detector = self.detector or self.registry.get("pose")
        people = detector(image)
        for person in people:
            if len(person) != N_KEYPOINTS:
                raise BadInput(
                    f"The pose detector returned {len(person)} keypoints per person; {N_KEYPOINTS} are expected.",
                    "Use an OpenPose-layout (COCO 18) body estimator.",
                )
        return [[(float(x), float(y), float(c)) for x, y, c in person] for person in people]

    def extract(self, image: Image.Image, *, cancel: CancelToken | None = None) -> PoseResult:
        if cancel is not None:
            cancel.raise_if_cancelled()
        width, height = image.size
        people = [p for p in self._detect(image) if sum(1 for _, _, c in p if c > 0) >= MIN_VISIBLE]
        if not people:
            return PoseResult(
                found=False,
                message="No person found in the image; the next rounds run without a pose constraint.",
            )
        pose_map = draw_pose_map(people, width, height)
        smoothed = smooth_pose_map(pose_map, float(self.settings.pose_sigma))
        seen = max(sum(1 for _, _, c in p if c > 0) for p in people)
        who = "1 person" if len(people) == 1 else f"{len(people)} people"
        return PoseResult(
            found=True,
            keypoints=people,
            pose_map=pose_map,
            smoothed=smoothed,
            message=f"Found {who} ({seen} of {N_KEYPOINTS} keypoints); the pose is kept in later rounds.",
        )
