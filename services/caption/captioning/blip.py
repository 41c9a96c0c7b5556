"""One loaded BLIP model captioning PIL images: the whole BLIP-specific part of the caption service.

    blip = BlipCaptioner(load_blip(resolve_model("models/tiny-blip")))
    blip.caption([image], GenerationSettings(prefix="a photo of"))   # -> ["a photo of ..."]

We run the two halves of transformers' `BlipForConditionalGeneration.generate` ourselves (vision tower, then
`text_decoder.generate` on the image embeddings), so that the vision tower can take the batch in slices (see
`vision_batch`); a test checks that the tokens equal that method's. Its prompt handling, kept here: the processor's
prefix tokens `[CLS] a photo of [SEP]` become `[DEC] a photo of` (the decoder's bos, the prefix, no [SEP]); without a
prefix the prompt is `[DEC]` alone. Transformers' `min_length` / `max_length` would count the prompt, so we pass
`min_new_tokens` / `max_new_tokens`: a caption has `min_length` to `max_length` tokens after the prefix, however long
the prefix. The output keeps the prompt, so the decoded caption reads "a photo of ..." (BLIP's own convention;
A1111's BLIP strips its "a picture of" prompt instead).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from services.caption.captioning.settings import GenerationSettings
from services.common.errors import InvalidArgument
from services.common.models.fingerprint import ModelFingerprint
from services.common.models.loading import BlipComponents

__all__ = ["BlipCaptioner", "to_rgb"]

# Sampled captions seed torch's global RNG (generate has no per-call generator); two captioners sampling on two
# threads at once would draw from each other's stream, so sampling holds this process-wide lock.
_RNG_LOCK = threading.Lock()


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as RGB; transparent pixels become white (BLIP would describe the black behind them otherwise)."""
    if not isinstance(image, Image.Image):
        raise InvalidArgument(f"expected a PIL image, got {type(image).__name__}; decode the file first")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class BlipCaptioner:
    """One loaded BLIP model; captions a list of images in one generate call. Usable from a notebook.

    (Sampled captions take one call per image: see `new_token_ids`.) `device` / `dtype` move the model in place
    (the components are shared with whoever loaded them); on CUDA, float16 or bfloat16 halve memory and time, on
    CPU keep float32. `vision_batch` caps the images per vision-tower forward. Default: 1 on CPU, where BLIP-base's
    vision tower gets slower per image as the batch grows (measured on 2 cores: 0.57 s alone, 0.80 s each in a
    batch of 16), while the decoder still takes the whole batch, which is where batching pays (0.77 -> 0.20 s per
    image for 20 tokens); unlimited on GPUs.
    """

    def __init__(
        self,
        components: BlipComponents,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        vision_batch: int | None = None,
    ) -> None:
        self.processor = components.processor
        self.model = components.model
        self.fingerprint: ModelFingerprint = components.fingerprint
        self.device = torch.device(device)
        self.model.to(device=self.device, dtype=dtype)
        self.dtype = next(self.model.parameters()).dtype
        self.vision_batch = vision_batch or (1 if self.device.type == "cpu" else 1 << 16)
        text = self.model.config.text_config
        # BLIP's decoder ends a caption with [SEP] (its generate passes sep_token_id as eos); [DEC] is its bos.
        self._bos, self._eos, self._pad = text.bos_token_id, text.sep_token_id, text.pad_token_id
        self._positions = text.max_position_embeddings

    # -- the notebook API --------------------------------------------------------------------------------------

    def caption(self, images: Sequence[Image.Image], settings: GenerationSettings) -> list[str]:
        """One caption per image, in order; [] for no images."""
        settings.validate()
        if not images:
            return []
        return self.caption_pixels(self.pixel_values(images), settings)

    def pixel_values(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The processor's resize + normalise: (N, 3, H, W) float32. Cheap to run on callers' threads.

        NumPy, not torch, on purpose: every thread that runs a torch op gets its own OpenMP team, whose threads
        spin after each op; four RPC threads doing that on two cores cut the worker's speed by 2.5x.
        """
        rgb = [to_rgb(image) for image in images]
        return self.processor.image_processor(images=rgb, return_tensors="np")["pixel_values"]

    def caption_pixels(self, pixel_values: np.ndarray | torch.Tensor, settings: GenerationSettings) -> list[str]:
        """Captions of already processed images (see `pixel_values`)."""
        prompt = self.prompt_ids(settings)
        return [
            self.processor.tokenizer.decode(prompt + ids, skip_special_tokens=True).strip()
            for ids in self.new_token_ids(pixel_values, settings)
        ]

    # -- the parts -----------------------------------------------------------------------------------------------

    def prompt_ids(self, settings: GenerationSettings) -> list[int]:
        """The decoder prompt: bos, then the prefix's tokens. Raises when the prompt plus the caption cannot fit."""
        ids = [self._bos]
        if settings.prefix.strip():
            ids += self.processor.tokenizer(settings.prefix, add_special_tokens=False)["input_ids"]
        if len(ids) + settings.max_length > self._positions:
            raise InvalidArgument(
                f"the prefix takes {len(ids) - 1} tokens and max_length asks for {settings.max_length} more, but this "
                f"model's decoder holds {self._positions - 1}; shorten the prefix or lower max_length",
                field="options.max_length",
            )
        return ids

    def new_token_ids(self, pixel_values: np.ndarray | torch.Tensor, settings: GenerationSettings) -> list[list[int]]:
        """The tokens generated after the prompt for each image, without the end token or padding."""
        settings.validate()
        prompt = self.prompt_ids(settings)
        pixel_values = torch.as_tensor(pixel_values)
        if not settings.sample:
            return self._generate(pixel_values, prompt, settings)
        # Sampled: one image per generate call under a fresh seed, so an image's caption never depends on which
        # other images shared its batch or on what ran before.
        results = []
        with _RNG_LOCK:
            for row in pixel_values.split(1):
                with torch.random.fork_rng(devices=self._rng_devices()):
                    torch.manual_seed(settings.seed)
                    results += self._generate(row, prompt, settings)
        return results

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision tower's output, (N, patches + 1, hidden), computed `vision_batch` images at a time."""
        pixels = pixel_values.to(self.device, self.dtype)
        with torch.inference_mode():
            return torch.cat(
                [self.model.vision_model(pixel_values=chunk)[0] for chunk in pixels.split(self.vision_batch)]
            )

    def _rng_devices(self) -> list[int]:
        if self.device.type != "cuda":
            return []  # fork only the CPU generator
        return [self.device.index if self.device.index is not None else torch.cuda.current_device()]

    def _generate(self, pixel_values: torch.Tensor, prompt: list[int], settings: GenerationSettings) -> list[list[int]]:
        embeddings = self.image_embeddings(pixel_values)
        # Every image of a batch has the same prompt, so nothing is padded and a batch decodes like single images.
        input_ids = torch.tensor([prompt], device=self.device).repeat(embeddings.shape[0], 1)
        kwargs: dict[str, Any] = dict(
            num_beams=settings.num_beams,
            min_new_tokens=settings.min_length,
            max_new_tokens=settings.max_length,
            do_sample=settings.sample,
        )
        if settings.sample:
            kwargs["top_p"] = settings.top_p  # only when sampling: transformers warns about an unused top_p
        if settings.repetition_penalty is not None:
            kwargs["repetition_penalty"] = settings.repetition_penalty
        with torch.inference_mode():
            output = self.model.text_decoder.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                eos_token_id=self._eos,
                pad_token_id=self._pad,
                encoder_hidden_states=embeddings,
                encoder_attention_mask=torch.ones(embeddings.shape[:-1], dtype=torch.long, device=self.device),
                **kwargs,
            )
        return [self._strip(row) for row in output[:, len(prompt) :].tolist()]

    def _strip(self, ids: list[int]) -> list[int]:
        """Cut at the end token: what follows it in a batch is padding (or a finished beam's filler)."""
        if self._eos in ids:
            ids = ids[: ids.index(self._eos)]
        return ids
