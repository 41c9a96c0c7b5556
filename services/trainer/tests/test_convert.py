"""The trainer's proto <-> domain conversions: pure functions, no server and no model."""

from __future__ import annotations

import pytest

from services.common.diagnostics import Diagnostic, Severity
from services.common.embeddings import EmbeddingFormat
from services.common.errors import InvalidArgument
from services.common.storage import LocalStore
from services.trainer import convert
from services.trainer.embedding_ops import EmbeddingSummary, ModelIdentity, StoredEmbedding
from services.trainer.job_spec import SAMPLERS, JobSpec, PreviewSettings
from services.trainer.plan import PlanSegment, TrainingPlan
from services.trainer.recipes import resolve_preview_every_steps, resolve_spec
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as pb

EMBEDDING = "embeddings/anna.safetensors"
DATASET = "datasets/anna/train/"
MODEL = "models/sd15"
REQUIRED = {"model": MODEL, "embedding_key": EMBEDDING, "dataset": DATASET}


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


def _spec(**fields) -> pb.TrainingSpec:
    base = {
        "embedding": common_pb2.StorageRef(key=EMBEDDING),
        "dataset": common_pb2.StorageRef(key=DATASET),
        "model": common_pb2.ModelRef(reference=MODEL),
    }
    return pb.TrainingSpec(**{**base, **fields})


def _refused(call, field: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert caught.value.field == field, caught.value.message
    return caught.value


def _resolve(request: convert.TrainingRequest) -> JobSpec:
    """What the servicer does with a request: the recipe and defaults under the set fields (no model needed)."""
    return JobSpec(
        training=resolve_spec(request.fields, request.recipe, family_size=512),
        recipe=request.recipe or "",
        preview_every_steps=resolve_preview_every_steps(request.fields, request.recipe),
        preview=request.preview,
        non_finite=request.non_finite,
    )


# --- training_request ------------------------------------------------------------------------------------------


def test_minimal_request_sets_only_the_required_fields(store):
    request = convert.training_request(_spec(), store, default_model="unused")
    assert request.fields == REQUIRED
    assert request.recipe is None
    assert (request.embedding_key, request.model) == (EMBEDDING, MODEL)
    assert request.preview == PreviewSettings()
    assert request.non_finite == "fail"


def test_default_model_and_dataset_slash(store):
    spec = _spec(model=common_pb2.ModelRef(), dataset=common_pb2.StorageRef(key="datasets/anna/train"))
    request = convert.training_request(spec, store, default_model="models/default")
    assert request.model == request.fields["model"] == "models/default"
    assert request.fields["dataset"] == DATASET


@pytest.mark.parametrize(
    ("set_fields", "expected"),
    [
        ({"warmup_steps": 0}, {"warmup_steps": 0}),  # optional: zero is a value
        ({"max_steps": 1500}, {"max_steps": 1500}),
        ({"batch_size": 2, "gradient_accumulation": 3}, {"batch_size": 2, "gradient_accumulation": 3}),
        ({"shuffle_tags": False}, {"shuffle_tags": False}),
        ({"keep_tags": 1}, {"keep_tags": 1}),
        ({"flip": True, "alpha_loss_weight": False}, {"flip": True, "alpha_loss_weight": False}),
        ({"save_every_steps": 0}, {"save_every_steps": 0}),
        ({"preview_every_steps": 0}, {"preview_every_steps": 0}),
        ({"seed": 2**40}, {"seed": 2**40}),
        ({"log_every_steps": 5}, {"log_every_steps": 5}),
        ({"tag_dropout": 0.1}, {"tag_dropout": 0.1}),  # float32 0.1 comes back as 0.1, not 0.100000001...
        ({"weight_decay": 0.01}, {"weight_decay": 0.01}),
        ({"min_snr_gamma": 5.0}, {"min_snr_gamma": 5.0}),
        ({"noise_offset": 0.05}, {"noise_offset": 0.05}),
        ({"learning_rate": "0.05:10, 0.005"}, {"learning_rate": "0.05:10, 0.005"}),
        ({"template": "subject"}, {"template": "subject"}),
        ({"template_text": "a [name]"}, {"template_text": "a [name]"}),
        ({"gradient_clip": "1.0"}, {"gradient_clip": "1.0"}),
        ({"width": 768, "height": 640}, {"width": 768, "height": 640}),
        ({"model": common_pb2.ModelRef(reference=MODEL, config_reference="cfg")}, {"model_config": "cfg"}),
        # plain fields at their zero value count as unset
        ({"learning_rate": "", "width": 0, "lr_scheduler": 0}, {}),
    ],
)
def test_each_set_field_and_only_it(store, set_fields, expected):
    request = convert.training_request(_spec(**set_fields), store, default_model="")
    assert request.fields == {**REQUIRED, **expected}


def test_recipe_is_not_a_field(store):
    request = convert.training_request(_spec(recipe="seed-a"), store, default_model="")
    assert request.recipe == "seed-a"
    assert request.fields == REQUIRED


ENUM_CASES = [
    ("lr_scheduler", pb.LR_SCHEDULER_A1111, "a1111"),
    ("lr_scheduler", pb.LR_SCHEDULER_CONSTANT, "constant"),
    ("lr_scheduler", pb.LR_SCHEDULER_LINEAR, "linear"),
    ("lr_scheduler", pb.LR_SCHEDULER_COSINE, "cosine"),
    ("latent_sampling", pb.LATENT_SAMPLING_ONCE, "once"),
    ("latent_sampling", pb.LATENT_SAMPLING_DETERMINISTIC, "deterministic"),
    ("latent_sampling", pb.LATENT_SAMPLING_RANDOM, "random"),
    ("gradient_clipping", pb.GRADIENT_CLIPPING_NONE, "none"),
    ("gradient_clipping", pb.GRADIENT_CLIPPING_VALUE, "value"),
    ("gradient_clipping", pb.GRADIENT_CLIPPING_NORM, "norm"),
    ("precision", pb.PRECISION_AUTO, "auto"),
    ("precision", pb.PRECISION_FP32, "fp32"),
    ("precision", pb.PRECISION_BF16, "bf16"),
    ("precision", pb.PRECISION_FP16, "fp16"),
]


@pytest.mark.parametrize(("name", "number", "text"), ENUM_CASES)
def test_enums_map_both_ways(store, name, number, text):
    request = convert.training_request(_spec(**{name: number}), store, default_model="")
    assert request.fields == {**REQUIRED, name: text}
    job = JobSpec(training=resolve_spec(request.fields, None))
    assert getattr(convert.training_spec_to_proto(job, embedding_key=EMBEDDING), name) == number


@pytest.mark.parametrize("name", ["lr_scheduler", "latent_sampling", "gradient_clipping", "precision", "non_finite"])
def test_unknown_enum_number_is_refused(store, name):
    _refused(lambda: convert.training_request(_spec(**{name: 99}), store, default_model=""), f"spec.{name}")


def test_unknown_sampler_is_refused(store):
    spec = _spec(preview=pb.PreviewSettings(sampler=42))
    _refused(lambda: convert.training_request(spec, store, default_model=""), "spec.preview.sampler")


def test_non_finite_and_samplers(store):
    assert (
        convert.training_request(_spec(non_finite=pb.NON_FINITE_ACTION_FAIL), store, default_model="").non_finite
        == "fail"
    )
    request = convert.training_request(_spec(non_finite=pb.NON_FINITE_ACTION_RETRY_HALF_RATE), store, default_model="")
    assert request.non_finite == "retry_half_rate"
    for number, name in enumerate(SAMPLERS, start=1):
        preview = convert.training_request(_spec(preview=pb.PreviewSettings(sampler=number)), store, default_model="")
        assert preview.preview.sampler == name
        assert common_pb2.Sampler.Name(number) == f"SAMPLER_{name.upper()}"


def test_extra_formats_dedupe_and_drop_safetensors(store):
    formats = [
        pb.EMBEDDING_FORMAT_DIFFUSERS,
        pb.EMBEDDING_FORMAT_SAFETENSORS,
        pb.EMBEDDING_FORMAT_A1111_PT,
        pb.EMBEDDING_FORMAT_DIFFUSERS,
    ]
    request = convert.training_request(_spec(extra_formats=formats), store, default_model="")
    assert request.fields["extra_formats"] == ("diffusers", "a1111_pt")
    resolve_spec(request.fields, None)  # the strings are the spec's EXTRA_FORMATS
    only_default = convert.training_request(
        _spec(extra_formats=[pb.EMBEDDING_FORMAT_SAFETENSORS]), store, default_model=""
    )
    assert only_default.fields["extra_formats"] == ()
    _refused(lambda: convert.training_request(_spec(extra_formats=[7]), store, default_model=""), "spec.extra_formats")


def test_preview_settings(store):
    preview = pb.PreviewSettings(
        prompts=["[name] portrait"],
        negative_prompt="blurry",
        seeds=[1, 2],
        weights=[0.8, 1.2],
        steps=30,
        cfg_scale=6.5,
        sampler=common_pb2.SAMPLER_DDIM,
        width=512,
        height=768,
    )
    request = convert.training_request(_spec(preview=preview), store, default_model="")
    assert request.preview == PreviewSettings(
        prompts=("[name] portrait",),
        negative_prompt="blurry",
        seeds=(1, 2),
        weights=(0.8, 1.2),
        steps=30,
        cfg_scale=6.5,
        sampler="ddim",
        width=512,
        height=768,
    )
    bad = _spec(preview=pb.PreviewSettings(weights=[5.0]))
    _refused(lambda: convert.training_request(bad, store, default_model=""), "spec.preview.weights")
    zero_steps = _spec(preview=pb.PreviewSettings(steps=0))  # set, so checked, not defaulted
    _refused(lambda: convert.training_request(zero_steps, store, default_model=""), "spec.preview.steps")


@pytest.mark.parametrize("field", ["embedding", "dataset"])
def test_foreign_store_is_refused(store, field):
    spec = _spec(**{field: common_pb2.StorageRef(key="x/y", store_url="s3://elsewhere/prefix")})
    error = _refused(lambda: convert.training_request(spec, store, default_model=""), f"spec.{field}.store_url")
    assert error.reason == "FOREIGN_STORE"
    own = _spec(**{field: common_pb2.StorageRef(key="x/y", store_url=store.url)})
    assert convert.training_request(own, store, default_model="").fields  # the server's own store is fine


@pytest.mark.parametrize(("field", "hint"), [("embedding", "CreateEmbedding"), ("dataset", ".txt captions")])
def test_missing_embedding_or_dataset_is_refused(store, field, hint):
    spec = _spec(**{field: common_pb2.StorageRef()})
    error = _refused(lambda: convert.training_request(spec, store, default_model=MODEL), f"spec.{field}")
    assert hint in error.message


def test_missing_model_is_refused(store):
    spec = _spec(model=common_pb2.ModelRef())
    error = _refused(lambda: convert.training_request(spec, store, default_model=""), "spec.model")
    assert "TISTUDIO_SD_MODEL" in error.message
    assert convert.model_reference(common_pb2.ModelRef(), "models/default", field="model") == "models/default"
    assert convert.model_reference(common_pb2.ModelRef(reference=MODEL), "models/default", field="model") == MODEL
    _refused(lambda: convert.model_reference(common_pb2.ModelRef(), "", field="model"), "model")


# --- the resolved spec round-trips -----------------------------------------------------------------------------

ROUND_TRIPS = {
    "minimal": {},
    "recipe": {"recipe": "seed-a", "max_steps": 1000},
    "recipe-b": {"recipe": "seed-b", "preview_every_steps": 25},
    "everything": {
        "model": common_pb2.ModelRef(reference="models/one.safetensors", config_reference="configs/sd15"),
        "learning_rate": "0.003",
        "lr_scheduler": pb.LR_SCHEDULER_COSINE,
        "warmup_steps": 50,
        "max_steps": 800,
        "batch_size": 2,
        "gradient_accumulation": 2,
        "width": 384,
        "height": 448,
        "template_text": "a photo of [name]\n[name], [filewords]",
        "shuffle_tags": True,
        "keep_tags": 1,
        "tag_dropout": 0.1,
        "latent_sampling": pb.LATENT_SAMPLING_RANDOM,
        "flip": True,
        "alpha_loss_weight": True,
        "gradient_clipping": pb.GRADIENT_CLIPPING_NORM,
        "gradient_clip": "1.0:100, 0.1",
        "weight_decay": 0.01,
        "min_snr_gamma": 5.0,
        "noise_offset": 0.05,
        "precision": pb.PRECISION_BF16,
        "save_every_steps": 0,
        "preview_every_steps": 0,
        "extra_formats": [pb.EMBEDDING_FORMAT_A1111_PT, pb.EMBEDDING_FORMAT_DIFFUSERS],
        "non_finite": pb.NON_FINITE_ACTION_RETRY_HALF_RATE,
        "seed": 7,
        "log_every_steps": 3,
        "preview": pb.PreviewSettings(
            prompts=["[name]", "[name] smiling"],
            seeds=[3, 4],
            weights=[0.8, 1.1],
            steps=12,
            cfg_scale=5.5,
            sampler=common_pb2.SAMPLER_DPMPP_2M_KARRAS,
        ),
    },
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_resolved_spec_sent_back_trains_the_same(store, name):
    first = _resolve(convert.training_request(_spec(**ROUND_TRIPS[name]), store, default_model=""))
    resolved = convert.training_spec_to_proto(first, embedding_key=EMBEDDING)
    second = _resolve(convert.training_request(resolved, store, default_model="other"))
    assert second == first
    assert convert.training_spec_to_proto(second, embedding_key=EMBEDDING) == resolved


def test_resolved_spec_has_every_field_set(store):
    job = _resolve(convert.training_request(_spec(recipe="seed-a"), store, default_model=""))
    out = convert.training_spec_to_proto(job, embedding_key=EMBEDDING)
    for name in ("warmup_steps", "max_steps", "shuffle_tags", "tag_dropout", "weight_decay", "seed", "flip"):
        assert out.HasField(name), name
    assert not out.HasField("min_snr_gamma")  # None: off
    assert (out.recipe, out.max_steps, out.save_every_steps, out.preview_every_steps) == ("seed-a", 3000, 50, 50)
    assert out.template == "photo_filewords"
    assert out.template_text == job.training.template_text and "[name]" in out.template_text
    assert out.latent_sampling == pb.LATENT_SAMPLING_DETERMINISTIC
    assert (out.preview.steps, out.preview.cfg_scale, out.preview.sampler) == (20, 7.0, common_pb2.SAMPLER_EULER_A)
    assert (out.preview.width, out.preview.height) == (512, 512)  # sized to the training resolution
    assert out.non_finite == pb.NON_FINITE_ACTION_FAIL
    assert out.model == common_pb2.ModelRef(reference=MODEL)
    assert (out.embedding.key, out.dataset.key) == (EMBEDDING, DATASET)


# --- models, embeddings, plans ---------------------------------------------------------------------------------


def _identity(family="sd1", prediction="epsilon", dims=(768,)) -> ModelIdentity:
    return ModelIdentity("models/sd15", "sd15", family, "ab" * 32, "abababab12", prediction, dims)


@pytest.mark.parametrize(
    ("family", "prediction", "expected"),
    [
        ("sd1", "epsilon", common_pb2.MODEL_FAMILY_SD1),
        ("sd2", "epsilon", common_pb2.MODEL_FAMILY_SD2_512),
        ("sd2", "v_prediction", common_pb2.MODEL_FAMILY_SD2_768),
        ("sdxl", "epsilon", common_pb2.MODEL_FAMILY_SDXL),
    ],
)
def test_model_identity(family, prediction, expected):
    info = convert.model_identity_to_proto(_identity(family, prediction, (1024,)))
    assert info == common_pb2.ModelInfo(
        reference="models/sd15",
        name="sd15",
        family=expected,
        sha256="ab" * 32,
        short_hash="abababab12",
        prediction_type=prediction,
        embedding_dims=[1024],
    )


def _stored(**changes) -> StoredEmbedding:
    values = dict(
        name="anna",
        vectors=4,
        dims=(768,),
        init_text="woman",
        step=0,
        key=EMBEDDING,
        format=EmbeddingFormat.SAFETENSORS,
        sha256="cd" * 32,
        short_hash="cdcdcdcdcdcd",
        metadata={"trigger": "anna"},
    )
    return StoredEmbedding(**{**values, **changes})


def test_embedding_and_exported_file():
    out = convert.embedding_to_proto(_stored(model=_identity()))
    assert (out.name, out.vectors_per_token, list(out.dims), out.init_text, out.step) == ("anna", 4, [768], "woman", 0)
    assert (out.file.key, out.format, out.sha256, out.short_hash) == (
        EMBEDDING,
        pb.EMBEDDING_FORMAT_SAFETENSORS,
        "cd" * 32,
        "cdcdcdcdcdcd",
    )
    assert dict(out.metadata) == {"trigger": "anna"}
    assert out.base_model.family == common_pb2.MODEL_FAMILY_SD1
    assert not convert.embedding_to_proto(_stored()).HasField("base_model")

    exported = convert.exported_file(_stored(key="e/anna_l.safetensors", text_encoder="clip_l"), b"bytes")
    assert exported == pb.ExportedFile(
        file=common_pb2.StorageRef(key="e/anna_l.safetensors"), sha256="cd" * 32, text_encoder="clip_l", data=b"bytes"
    )
    assert convert.exported_file(_stored(), None).data == b""


def test_embedding_formats():
    assert convert.embedding_format(pb.EMBEDDING_FORMAT_UNSPECIFIED) is EmbeddingFormat.SAFETENSORS
    for fmt in (EmbeddingFormat.SAFETENSORS, EmbeddingFormat.A1111_PT, EmbeddingFormat.DIFFUSERS):
        number = convert.format_to_proto(fmt)
        assert pb.EmbeddingFormat.Name(number) == f"EMBEDDING_FORMAT_{fmt.name}"
        assert convert.embedding_format(number) is fmt
    _refused(lambda: convert.embedding_format(9), "format")


def test_plan_to_proto(store):
    job = _resolve(convert.training_request(_spec(max_steps=100), store, default_model=""))
    warning = Diagnostic(Severity.WARNING, "SCHEDULE_ENDS_EARLY", "ends early", "extend it", field="spec.learning_rate")
    plan = TrainingPlan(
        spec=job.training,
        recipe="",
        preview_every_steps=500,
        model=_identity("sd2", "v_prediction", (1024,)),
        embedding=EmbeddingSummary("anna", 4, (1024,), 20, "woman", "ef" * 32),
        images=12,
        samples_per_step=1,
        steps_per_epoch=12,
        epochs=80 / 12,
        start_step=20,
        end_step=100,
        schedule=(PlanSegment(0.005, 20, 100),),
        example_prompts=("a photo of anna",),
        max_prompt_tokens=9,
        diagnostics=(warning,),
    )
    out = convert.plan_to_proto(plan, job)
    assert out.ok and list(out.diagnostics) == [
        common_pb2.Diagnostic(
            severity=2,
            code="SCHEDULE_ENDS_EARLY",
            message="ends early",
            suggestion="extend it",
            field="spec.learning_rate",
        )
    ]
    p = out.plan
    assert p.resolved == convert.training_spec_to_proto(job, embedding_key=EMBEDDING)
    assert p.model.family == common_pb2.MODEL_FAMILY_SD2_768
    assert (p.embedding.name, p.embedding.vectors_per_token, list(p.embedding.dims), p.embedding.step) == (
        "anna",
        4,
        [1024],
        20,
    )
    assert (p.embedding.init_text, p.embedding.file.key) == ("woman", EMBEDDING)
    assert (p.images, p.samples_per_step, p.steps_per_epoch, p.start_step, p.end_step) == (12, 1, 12, 20, 100)
    assert p.epochs == pytest.approx(80 / 12)
    assert list(p.schedule) == [pb.ScheduleSegment(rate=0.005, start_step=20, end_step=100)]
    assert (list(p.example_prompts), p.max_prompt_tokens) == (["a photo of anna"], 9)

    error = Diagnostic(Severity.ERROR, "NO_IMAGES", "no images", field="spec.dataset")
    failed = TrainingPlan(**{**plan.__dict__, "diagnostics": (warning, error)})
    assert not convert.plan_to_proto(failed, job).ok
