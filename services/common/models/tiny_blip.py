"""The tiny BLIP captioner of `tiny.py`'s build: BlipForConditionalGeneration + BlipProcessor, random but seeded,
with weights scaled so that its captions depend on the image (BLIP's own init captions every image alike)."""

from __future__ import annotations

from pathlib import Path

from services.common.models.tiny_vocab import bert_vocab

__all__ = ["build_tiny_blip"]


def build_tiny_blip(folder: Path, *, seed: int, image_size: int = 32) -> None:
    """BlipForConditionalGeneration + BlipProcessor with a generated BERT vocab and `[DEC]` as decoder bos."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder.mkdir(parents=True)
    vocab = {piece: i for i, piece in enumerate(bert_vocab())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", model_max_length=512)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    sep, pad, bos = tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=37,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            bos_token_id=bos,
            eos_token_id=sep,
            pad_token_id=pad,
            sep_token_id=sep,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    _make_image_dependent(model, seed + 1)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)


def _make_image_dependent(model, seed: int) -> None:
    """BLIP's own init (vision std 1e-10, small cross-attention) makes a random model caption every image alike;
    larger vision and cross-attention weights make its captions depend on the image, as tests need."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.vision_model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
        for layer in model.text_decoder.bert.encoder.layer:
            for weight in (layer.crossattention.self.value.weight, layer.crossattention.output.dense.weight):
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.2)
