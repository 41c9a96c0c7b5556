"""What a run records about itself: the embedding files' metadata and settings.json.

Both read a TrainingSession (its spec, components, dataset, plan and precision) and nothing else.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from services.common.version import tool_version
from services.trainer.engine.init import META_FAMILY

__all__ = ["embedding_metadata", "run_settings"]


def embedding_metadata(session: Any) -> dict[str, str]:
    """The metadata every saved embedding file of the run carries (A1111's fields plus the model and dataset)."""
    spec, fingerprint = session.spec, session.components.fingerprint
    metadata = dict(session.start_embedding.metadata)
    metadata.update(
        {
            META_FAMILY: session.components.family,
            "prediction_type": session.components.prediction_type,
            "base_model": spec.model,
            "sd_checkpoint": fingerprint.short_hash,
            "learning_rate": spec.learning_rate,
            "lr_scheduler": spec.lr_scheduler,
            "template": spec.template,
            "dataset": spec.dataset,
            "dataset_sha256": session.encoded.sha256,
            "resolution": f"{spec.width}x{spec.height}",
            "samples_per_step": str(session.plan.samples_per_step),
            "tool_version": tool_version(),
            **fingerprint.as_metadata(),
        }
    )
    return metadata


def run_settings(session: Any) -> dict[str, Any]:
    """settings.json: every knob, the model and dataset identity, and what the run made of them."""
    components, embedding = session.components, session.start_embedding
    return {
        "spec": session.spec.to_record(),
        "embedding": {
            "name": session.name,
            "vectors": int(session.vectors.shape[0]),
            "width": int(session.vectors.shape[1]),
            "widths": [int(vectors.shape[1]) for vectors in session.trained],  # per text encoder
            "init_text": embedding.metadata.get("init_text", ""),
            "start_step": embedding.step or 0,
        },
        "model": {
            "reference": session.spec.model,
            "sha256": components.fingerprint.sha256,
            "short_hash": components.fingerprint.short_hash,
            "family": components.family,
            "prediction_type": components.prediction_type,
            "vae_scale_factor": components.vae_scale_factor,
            "latent_scaling_factor": session.encoded.latents.scaling_factor,
        },
        "dataset": {
            "prefix": session.spec.dataset,
            "images": len(session.encoded.kept),
            "sha256": session.encoded.sha256,
            "notes": [note.to_dict() for note in session.notes],
        },
        "plan": {
            "batch_size": session.plan.batch_size,
            "gradient_accumulation": session.plan.accumulation,
            "samples_per_step": session.plan.samples_per_step,
            "steps_per_epoch": session.plan.steps_per_epoch,
            "final_step": session.final_step,
            "ends_early": session.ends_early,
        },
        "runtime": {
            "device": str(session.precision.device),
            "precision": session.precision.name,
            "tool_version": tool_version(),
            **{pkg: _version(pkg) for pkg in ("torch", "diffusers", "transformers")},
        },
        "job": session.settings_extra,
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
