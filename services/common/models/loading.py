"""Load resolved models as frozen modules: Stable Diffusion components, BLIP captioner and CLIP scorer.

Every module comes back in eval mode with `requires_grad=False` (textual inversion trains a new embedding row, never
these weights; a trainer unfreezes what it needs explicitly). A broken folder (missing component, missing weights,
bad JSON) raises `InvalidModel` naming the file, before any weights are read.

Family: "sdxl" when the pipeline has a second text encoder (`text_encoder_2`, SDXL's OpenCLIP-G with its
projection); else "sd2" when the text encoder is OpenCLIP-like (hidden size 1024, or `gelu` activation where CLIP-L
uses `quick_gelu`); else "sd1" (CLIP-L 768 and the tiny test models). SD2's 768 model is told from its 512 base by
the scheduler's `prediction_type` (v-prediction). Embedding widths: each text encoder's `hidden_size`, in order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from services.common.models.fingerprint import ModelFingerprint
from services.common.models.reference import InvalidModel, ResolvedModel

__all__ = [
    "StableDiffusionComponents",
    "BlipComponents",
    "ClipComponents",
    "load_stable_diffusion",
    "load_blip",
    "load_clip",
    "sd_family",
    "FAMILY_NAMES",
]

log = logging.getLogger(__name__)

_COMPONENT_CONFIGS = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
    "tokenizer": "tokenizer_config.json",
}
_SDXL_COMPONENT_CONFIGS = {"text_encoder_2": "config.json", "tokenizer_2": "tokenizer_config.json"}
_WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
# SafetensorError (a truncated or corrupt weights file) derives from Exception only, so it is named here.
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, SafetensorError)


@dataclass
class StableDiffusionComponents:
    tokenizer: Any  # transformers.CLIPTokenizer
    text_encoder: Any  # transformers.CLIPTextModel
    unet: Any  # diffusers.UNet2DConditionModel
    vae: Any  # diffusers.AutoencoderKL
    scheduler: Any  # the model's own scheduler (PNDM for SD1.5); build training schedulers from its config
    fingerprint: ModelFingerprint
    family: str  # "sd1" | "sd2" | "sdxl"
    prediction_type: str  # "epsilon" | "v_prediction" (scheduler config)
    tokenizer_2: Any = None  # SDXL: the OpenCLIP-G tokenizer (pads with "!")
    text_encoder_2: Any = None  # SDXL: transformers.CLIPTextModelWithProjection (OpenCLIP-G)
    # SDXL pipelines: an empty negative prompt is zero conditioning (model_index.json; diffusers' default True)
    force_zeros_for_empty_prompt: bool = False

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell: 8 for real SD, 2 for the tiny test model."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def text_encoders(self) -> tuple[Any, ...]:
        """(text_encoder,) or, for SDXL, (text_encoder, text_encoder_2): the order of an embedding's vectors."""
        return (self.text_encoder,) if self.text_encoder_2 is None else (self.text_encoder, self.text_encoder_2)

    @property
    def tokenizers(self) -> tuple[Any, ...]:
        return (self.tokenizer,) if self.tokenizer_2 is None else (self.tokenizer, self.tokenizer_2)

    @property
    def embedding_dims(self) -> tuple[int, ...]:
        """An embedding's vector width per text encoder: (768,) SD1.x, (1024,) SD2.x, (768, 1280) SDXL."""
        return tuple(int(encoder.config.hidden_size) for encoder in self.text_encoders)

    @property
    def default_size(self) -> int:
        """The side the UNet was trained at, in pixels (its sample size x the VAE factor): the family's 512, 768 for
        SD2's v-prediction model and 1024 for SDXL on real weights; 64 for the tiny and toy models."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor


@dataclass
class BlipComponents:
    processor: Any  # transformers.BlipProcessor
    model: Any  # transformers.BlipForConditionalGeneration
    fingerprint: ModelFingerprint


@dataclass(frozen=True)
class ClipComponents:
    processor: Any  # transformers.CLIPProcessor (image processor + CLIP tokenizer)
    model: Any  # transformers.CLIPModel, frozen
    fingerprint: ModelFingerprint


def sd_family(text_encoder_config: Any, *, second_text_encoder: bool = False) -> str:
    if second_text_encoder:
        return "sdxl"
    hidden = getattr(text_encoder_config, "hidden_size", None)
    act = getattr(text_encoder_config, "hidden_act", "quick_gelu")
    return "sd2" if hidden == 1024 or act == "gelu" else "sd1"


def _freeze(module: Any, device: str | torch.device) -> Any:
    module.to(device)
    module.eval()
    module.requires_grad_(False)
    return module


def _read_json(path: Path, reference: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidModel(f"model {reference!r}: {path} is missing; re-download or re-export the model") from exc
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"model {reference!r}: {path} is not valid JSON ({exc}); repair or re-download it") from exc
    if not isinstance(data, dict):
        raise InvalidModel(f"model {reference!r}: {path} must hold a JSON object")
    return data


def _check_diffusers_folder(root: Path, reference: str) -> dict:
    """Validate the folder layout and return the scheduler config."""
    components = _component_configs(root, reference)
    missing = [str(root / name) for name in components if not (root / name).is_dir()]
    if missing:
        raise InvalidModel(
            f"model {reference!r}: component folder {', '.join(missing)} is missing; re-export the pipeline"
        )
    for name, config_name in components.items():
        folder = root / name
        if name.startswith("tokenizer") and not (folder / config_name).exists():
            if not any((folder / f).exists() for f in ("tokenizer.json", "vocab.json")):
                raise InvalidModel(f"model {reference!r}: {folder} holds no tokenizer files (vocab.json/merges.txt)")
            continue
        _read_json(folder / config_name, reference)
        if name in _WEIGHTED and not any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir()):
            raise InvalidModel(
                f"model {reference!r}: {folder} has no weights file (diffusion_pytorch_model.safetensors / "
                "model.safetensors); download the complete model"
            )
    return _read_json(root / "scheduler" / _COMPONENT_CONFIGS["scheduler"], reference)


def _component_configs(root: Path, reference: str) -> dict[str, str]:
    """The component folders a pipeline folder must hold, by model_index.json: SDXL adds its second encoder."""
    index = _read_json(root / "model_index.json", reference)
    if index.get("text_encoder_2") is not None:
        return {**_COMPONENT_CONFIGS, **_SDXL_COMPONENT_CONFIGS}
    return dict(_COMPONENT_CONFIGS)


def _is_sdxl_folder(root: Path) -> bool:
    return (root / "text_encoder_2").is_dir()


def _scheduler_class(config: dict, reference: str) -> Any:
    import diffusers

    name = config.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if cls is None or not hasattr(cls, "from_config"):
        raise InvalidModel(f"model {reference!r}: unknown scheduler class {name!r} in scheduler/scheduler_config.json")
    return cls


def _load_folder(root: Path, reference: str, dtype: torch.dtype) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    scheduler_cls = _scheduler_class(_check_diffusers_folder(root, reference), reference)
    loaders = [
        ("tokenizer", lambda: CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")),
        ("text_encoder", lambda: CLIPTextModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype)),
        ("unet", lambda: UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype)),
        ("vae", lambda: AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype)),
        ("scheduler", lambda: scheduler_cls.from_pretrained(root, subfolder="scheduler")),
    ]
    if _is_sdxl_folder(root):
        loaders += [
            ("tokenizer_2", lambda: CLIPTokenizer.from_pretrained(root, subfolder="tokenizer_2")),
            (
                "text_encoder_2",
                lambda: CLIPTextModelWithProjection.from_pretrained(root, subfolder="text_encoder_2", dtype=dtype),
            ),
        ]
    loaded = {}
    for name, load in loaders:
        try:
            loaded[name] = load()
        except _LOAD_ERRORS as exc:
            raise InvalidModel(f"model {reference!r}: cannot load {root / name}: {exc}") from exc
    return loaded


def _load_single_file(resolved: ResolvedModel, dtype: torch.dtype) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if resolved.config_path is None:
        raise InvalidModel(f"model {resolved.reference!r}: a single-file checkpoint needs a config folder")
    _check_diffusers_folder(resolved.config_path, str(resolved.config_path))
    sdxl = _is_sdxl_folder(resolved.config_path)
    pipeline_cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    try:
        pipe = pipeline_cls.from_single_file(
            str(resolved.path), config=str(resolved.config_path), local_files_only=True, torch_dtype=dtype
        )
    except _LOAD_ERRORS as exc:
        raise InvalidModel(
            f"model {resolved.reference!r}: cannot load {resolved.path} with the configs of {resolved.config_path} "
            f"({exc}); check that the config folder is of the same architecture (SD1.x, SD2.x or SDXL)"
        ) from exc
    names = ["tokenizer", "text_encoder", "unet", "vae", "scheduler"]
    if sdxl:
        names += ["tokenizer_2", "text_encoder_2"]
    return {name: getattr(pipe, name) for name in names}


def load_stable_diffusion(
    resolved: ResolvedModel, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> StableDiffusionComponents:
    """The SD components of a resolved "diffusers" or "single_file" model, frozen, on `device` in `dtype`."""
    if resolved.kind == "diffusers":
        parts = _load_folder(resolved.path, resolved.reference, dtype)
    elif resolved.kind == "single_file":
        parts = _load_single_file(resolved, dtype)
    else:
        raise InvalidModel(
            f"model {resolved.reference!r} is a {resolved.kind} model, not Stable Diffusion; pass a diffusers folder "
            "or a .safetensors SD checkpoint"
        )
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        if name in parts:
            _freeze(parts[name], device)
    sdxl = "text_encoder_2" in parts
    folder = resolved.path if resolved.kind == "diffusers" else resolved.config_path
    index = _read_json(folder / "model_index.json", resolved.reference)
    return StableDiffusionComponents(
        **parts,
        force_zeros_for_empty_prompt=sdxl and bool(index.get("force_zeros_for_empty_prompt", True)),
        fingerprint=resolved.fingerprint,
        family=sd_family(parts["text_encoder"].config, second_text_encoder=sdxl),
        prediction_type=str(parts["scheduler"].config.get("prediction_type", "epsilon")),
    )


def load_blip(resolved: ResolvedModel, *, device: str | torch.device = "cpu") -> BlipComponents:
    """BlipProcessor + BlipForConditionalGeneration of a resolved "transformers" (BLIP) model, frozen."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    if resolved.kind != "transformers":
        raise InvalidModel(f"model {resolved.reference!r} is a {resolved.kind} model; pass a BLIP captioning folder")
    _read_json(resolved.path / "config.json", resolved.reference)
    try:
        processor = BlipProcessor.from_pretrained(resolved.path)
        model = BlipForConditionalGeneration.from_pretrained(resolved.path)
    except _LOAD_ERRORS as exc:
        raise InvalidModel(f"model {resolved.reference!r}: cannot load BLIP from {resolved.path}: {exc}") from exc
    return BlipComponents(processor=processor, model=_freeze(model, device), fingerprint=resolved.fingerprint)


def load_clip(resolved: ResolvedModel, *, device: str | torch.device = "cpu") -> ClipComponents:
    """CLIPProcessor + CLIPModel (both towers: images and text) of a resolved "transformers" folder, frozen."""
    from transformers import CLIPModel, CLIPProcessor

    hint = "pass a CLIPModel folder (e.g. openai/clip-vit-large-patch14, or tiny-clip in tests)"
    if resolved.kind != "transformers":
        raise InvalidModel(f"model {resolved.reference!r} is a {resolved.kind} model, not CLIP; {hint}")
    # Checked before loading: CLIPModel.from_pretrained on another architecture only warns and inits at random.
    model_type = _read_json(resolved.path / "config.json", resolved.reference).get("model_type")
    if model_type != "clip":
        raise InvalidModel(
            f"model {resolved.reference!r}: {resolved.path} holds a {model_type!r} model, not CLIP ('clip'); {hint}"
        )
    try:
        processor = CLIPProcessor.from_pretrained(resolved.path)
        model = CLIPModel.from_pretrained(resolved.path)
    except _LOAD_ERRORS as exc:
        raise InvalidModel(f"model {resolved.reference!r}: cannot load CLIP from {resolved.path}: {exc}") from exc
    return ClipComponents(processor=processor, model=_freeze(model, device), fingerprint=resolved.fingerprint)
