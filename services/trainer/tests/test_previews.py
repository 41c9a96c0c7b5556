"""The preview dispatcher (background rendering that never holds training up, bounded when it falls behind, one
notice per job and reason) and the gRPC renderer against real servers on local ports: no PreviewService, nothing
listening, a stand-in PreviewService that records what it was sent, and one that refuses."""

from __future__ import annotations

import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

from services.common.diagnostics import Severity
from services.common.errors import InvalidArgument
from services.trainer.job_spec import SAMPLERS, PreviewSettings
from services.trainer.jobs import PreviewInfo
from services.trainer.preview_client import GrpcPreviewRenderer
from services.trainer.previews import PreviewDispatcher, PreviewRequest, PreviewUnavailable
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2, preview_pb2_grpc

WAIT = 10.0  # seconds a test waits for the worker thread (never reached when things work)


def _request(step: int, job_id: str = "job-1", **changes) -> PreviewRequest:
    values = dict(
        job_id=job_id,
        step=step,
        model="models/tiny-sd",
        model_config="",
        embedding_key=f"jobs/{job_id}/savepoints/{step:06d}/subj3ct.safetensors",
        trigger="subj3ct",
        prompts=("a photo of subj3ct",),
        settings=PreviewSettings(),
        output_prefix=f"jobs/{job_id}/savepoints/{step:06d}/previews/",
    )
    return PreviewRequest(**(values | changes))


class Sink:
    def __init__(self) -> None:
        self.previews: list[PreviewInfo] = []
        self.notices = []

    def report_preview(self, preview) -> None:
        self.previews.append(preview)

    def notice(self, diagnostic) -> None:
        self.notices.append(diagnostic)


class GatedRenderer:
    """Renders only once `gate` is set; `started` tells which steps it began."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[int] = []
        self._began = threading.Condition()

    def render(self, request):
        with self._began:
            self.started.append(request.step)
            self._began.notify_all()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return PreviewInfo(request.step, f"{request.output_prefix}manifest.json")

    def wait_started(self, count: int) -> None:
        with self._began:
            assert self._began.wait_for(lambda: len(self.started) >= count, WAIT), self.started


class ScriptedRenderer:
    """Per step: an exception to raise, or None to render."""

    def __init__(self, script) -> None:
        self.script = script

    def render(self, request):
        error = self.script.get((request.job_id, request.step))
        if error is not None:
            raise error
        return PreviewInfo(request.step, f"{request.output_prefix}manifest.json")


@pytest.fixture
def dispatchers():
    made = []

    def make(renderer, **kwargs) -> PreviewDispatcher:
        dispatcher = PreviewDispatcher(renderer, **kwargs)
        made.append((dispatcher, renderer))
        return dispatcher

    yield make
    for dispatcher, renderer in made:
        if isinstance(renderer, GatedRenderer):
            renderer.gate.set()
        dispatcher.close(timeout=WAIT)


# ---- the dispatcher --------------------------------------------------------------------------------------------
def test_submit_returns_at_once_while_the_renderer_is_busy(dispatchers):
    renderer = GatedRenderer()
    dispatcher = dispatchers(renderer)
    sink = Sink()
    began = time.monotonic()
    dispatcher.submit(_request(1), sink)
    renderer.wait_started(1)
    dispatcher.submit(_request(2), sink)
    assert time.monotonic() - began < 2.0  # the renderer is held at its gate: submit did not wait for it
    assert not dispatcher.idle(0.05)
    assert sink.previews == []
    renderer.gate.set()
    assert dispatcher.idle(WAIT)
    assert [p.step for p in sink.previews] == [1, 2] and sink.notices == []


def test_when_behind_the_oldest_pending_request_is_dropped_with_one_notice(dispatchers):
    renderer = GatedRenderer()
    skipped: list[str] = []
    dispatcher = dispatchers(renderer, max_pending=2, on_skipped=skipped.append)
    sink = Sink()
    dispatcher.submit(_request(1), sink)
    renderer.wait_started(1)  # step 1 is rendering; 2 and 3 wait
    for step in (2, 3, 4, 5):  # 4 pushes out 2, 5 pushes out 3
        dispatcher.submit(_request(step), sink)
    assert [n.code for n in sink.notices] == ["PREVIEWS_BEHIND"]  # said once, at the first drop
    assert sink.notices[0].message.startswith("step 2:")
    assert sink.notices[0].field == "spec.preview_every_steps" and sink.notices[0].suggestion
    assert skipped == ["PREVIEWS_BEHIND", "PREVIEWS_BEHIND"]  # both drops counted
    renderer.gate.set()
    assert dispatcher.idle(WAIT)
    assert renderer.started == [1, 4, 5]  # the newest steps were rendered
    assert [p.step for p in sink.previews] == [1, 4, 5]


def test_a_renderer_error_becomes_a_notice_and_the_dispatcher_goes_on(dispatchers, caplog):
    renderer = ScriptedRenderer({("job-1", 1): RuntimeError("boom")})
    skipped: list[str] = []
    dispatcher = dispatchers(renderer, on_skipped=skipped.append)
    sink = Sink()
    dispatcher.submit(_request(1), sink)
    assert dispatcher.idle(WAIT)
    dispatcher.submit(_request(2), sink)
    assert dispatcher.idle(WAIT)
    assert [(n.code, n.severity) for n in sink.notices] == [("PREVIEW_FAILED", Severity.WARNING)]
    assert "step 1" in sink.notices[0].message
    assert [p.step for p in sink.previews] == [2]
    assert skipped == ["PREVIEW_FAILED"]
    assert any("preview rendering failed" in r.getMessage() for r in caplog.records)  # the traceback is logged


def test_a_reason_is_told_once_per_job_until_a_render_succeeds(dispatchers):
    def unreachable():
        return PreviewUnavailable("PREVIEW_SERVICE_UNREACHABLE", "no answer", "start it")

    renderer = ScriptedRenderer(
        {
            ("job-1", 1): unreachable(),
            ("job-1", 2): unreachable(),  # the same reason again: not told
            ("job-2", 2): unreachable(),  # another job: told
            # job-1 step 3 renders: the next failure is news again
            ("job-1", 4): unreachable(),
            ("job-1", 5): PreviewUnavailable("PREVIEW_REFUSED", "refused"),  # another reason: told
        }
    )
    skipped: list[str] = []
    dispatcher = dispatchers(renderer, on_skipped=skipped.append)
    one, two = Sink(), Sink()
    for job_id, step in (("job-1", 1), ("job-1", 2), ("job-2", 2), ("job-1", 3), ("job-1", 4), ("job-1", 5)):
        dispatcher.submit(_request(step, job_id), one if job_id == "job-1" else two)
        assert dispatcher.idle(WAIT)
    assert [(n.code, n.message) for n in one.notices] == [
        ("PREVIEW_SERVICE_UNREACHABLE", "step 1: no answer"),
        ("PREVIEW_SERVICE_UNREACHABLE", "step 4: no answer"),
        ("PREVIEW_REFUSED", "step 5: refused"),
    ]
    assert one.notices[0].suggestion == "start it"
    assert [n.code for n in two.notices] == ["PREVIEW_SERVICE_UNREACHABLE"]
    assert [p.step for p in one.previews] == [3]
    assert len(skipped) == 5


def test_without_a_renderer_each_job_is_told_once_and_nothing_renders(dispatchers):
    skipped: list[str] = []
    dispatcher = dispatchers(None, on_skipped=skipped.append)
    assert not dispatcher.configured
    one, two = Sink(), Sink()
    for step in (2, 4, 6):
        dispatcher.submit(_request(step), one)  # told right away, on the caller's thread
    dispatcher.submit(_request(2, "job-2"), two)
    assert [n.code for n in one.notices] == ["PREVIEWS_NOT_CONFIGURED"]
    assert one.notices[0].message.startswith("step 2:") and "TISTUDIO_PREVIEW_ADDRESS" in one.notices[0].suggestion
    assert [n.code for n in two.notices] == ["PREVIEWS_NOT_CONFIGURED"]
    assert skipped == ["PREVIEWS_NOT_CONFIGURED"] * 4
    assert one.previews == [] and dispatcher.idle(0)


def test_close_renders_what_is_pending_then_ignores_new_requests(dispatchers):
    renderer = GatedRenderer()
    dispatcher = dispatchers(renderer)
    sink = Sink()
    dispatcher.submit(_request(1), sink)
    renderer.wait_started(1)
    dispatcher.submit(_request(2), sink)
    renderer.gate.set()
    dispatcher.close(timeout=WAIT)
    assert [p.step for p in sink.previews] == [1, 2]
    dispatcher.submit(_request(3), sink)
    time.sleep(0.05)
    assert renderer.started == [1, 2] and sink.notices == []


# ---- the gRPC renderer -----------------------------------------------------------------------------------------
class RecordingPreviews(preview_pb2_grpc.PreviewServiceServicer):
    """Answers RenderPreviews with one image per (prompt, seed, weight), plus one with an out-of-range prompt index."""

    def __init__(self) -> None:
        self.requests: list[preview_pb2.RenderPreviewsRequest] = []
        self.metadata: list[dict[str, str]] = []

    def RenderPreviews(self, request, context):
        self.requests.append(request)
        self.metadata.append({m.key: m.value for m in context.invocation_metadata()})
        images = []
        for p in range(len(request.prompts) + 1):  # the last prompt index is past the prompts
            for seed in request.seeds:
                for weight in request.weights:
                    key = f"{request.output.key}p{p}-s{seed}-w{weight:g}.png"
                    image = common_pb2.ImageData(ref=common_pb2.StorageRef(key=key))
                    images.append(
                        preview_pb2.PreviewImage(
                            prompt_index=p,
                            seed=seed,
                            weight=weight,
                            image=preview_pb2.GeneratedImage(image=image, seed=seed),
                        )
                    )
        manifest = common_pb2.StorageRef(key=f"{request.output.key}manifest.json")
        return preview_pb2.RenderPreviewsResponse(images=images, manifest=manifest)


class RefusingPreviews(preview_pb2_grpc.PreviewServiceServicer):
    def RenderPreviews(self, request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the embedding file is not readable")


@pytest.fixture
def servers():
    started = []

    def start(servicer=None) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        if servicer is not None:
            preview_pb2_grpc.add_PreviewServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in started:
        server.stop(0)


@pytest.fixture
def renderers():
    made = []

    def make(address: str, **kwargs) -> GrpcPreviewRenderer:
        renderer = GrpcPreviewRenderer(address, **kwargs)
        made.append(renderer)
        return renderer

    yield make
    for renderer in made:
        renderer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_without_the_preview_service_is_unimplemented(servers, renderers):
    address = servers()
    with pytest.raises(PreviewUnavailable) as raised:
        renderers(address, timeout=5).render(_request(1))
    assert raised.value.code == "PREVIEW_SERVICE_UNIMPLEMENTED"
    assert address in raised.value.message and raised.value.suggestion


def test_nothing_listening_is_unreachable(renderers):
    address = f"127.0.0.1:{_free_port()}"
    began = time.monotonic()
    with pytest.raises(PreviewUnavailable) as raised:
        renderers(address, timeout=1.0).render(_request(1))
    assert raised.value.code == "PREVIEW_SERVICE_UNREACHABLE"
    assert address in raised.value.message
    assert time.monotonic() - began < 5.0


def test_a_refusal_is_reported_with_the_services_details(servers, renderers):
    with pytest.raises(PreviewUnavailable) as raised:
        renderers(servers(RefusingPreviews()), timeout=5).render(_request(1))
    assert raised.value.code == "PREVIEW_REFUSED"
    assert "INVALID_ARGUMENT" in raised.value.message and "not readable" in raised.value.message


def test_render_sends_the_whole_request_and_maps_the_images(servers, renderers):
    service = RecordingPreviews()
    renderer = renderers(servers(service), token="s3cret", timeout=5)
    settings = PreviewSettings(
        prompts=("a photo of [name]", "[name] on a beach"),
        negative_prompt="blurry",
        seeds=(7, 8),
        weights=(0.75, 1.25),
        steps=12,
        cfg_scale=5.5,
        sampler="dpmpp_2m",
        width=64,
        height=48,
    )
    request = _request(
        40,
        job_id="j-9",
        model="models/sd15.safetensors",
        model_config="configs/sd15",
        prompts=settings.prompts,
        settings=settings,
    )
    preview = renderer.render(request)

    (sent,) = service.requests
    assert (sent.model.reference, sent.model.config_reference) == ("models/sd15.safetensors", "configs/sd15")
    assert (sent.embedding.file.key, sent.embedding.trigger) == (request.embedding_key, "subj3ct")
    assert list(sent.prompts) == list(settings.prompts) and sent.negative_prompt == "blurry"
    assert list(sent.seeds) == [7, 8] and list(sent.weights) == [0.75, 1.25]
    sampling = sent.sampling
    assert sampling.sampler == SAMPLERS.index("dpmpp_2m") + 1 == common_pb2.SAMPLER_DPMPP_2M
    assert (sampling.steps, sampling.cfg_scale, sampling.width, sampling.height) == (12, 5.5, 64, 48)
    assert sent.output.key == request.output_prefix and sent.step == 40 and sent.job_id == "j-9"
    assert service.metadata[0]["authorization"] == "Bearer s3cret"

    assert preview.step == 40 and preview.manifest_key == f"{request.output_prefix}manifest.json"
    assert len(preview.items) == 3 * 2 * 2
    first = preview.items[0]
    assert first == {
        "prompt": "a photo of [name]",
        "seed": 7,
        "weight": 0.75,
        "image_key": f"{request.output_prefix}p0-s7-w0.75.png",
    }
    by_index = {item["image_key"].split("/")[-1].split("-")[0]: item["prompt"] for item in preview.items}
    assert by_index == {"p0": "a photo of [name]", "p1": "[name] on a beach", "p2": ""}  # past the prompts: ""


def test_every_sampler_maps_to_its_proto_number(servers, renderers):
    service = RecordingPreviews()
    renderer = renderers(servers(service), timeout=5)
    for sampler in SAMPLERS:
        renderer.render(_request(1, settings=PreviewSettings(sampler=sampler)))
    names = [common_pb2.Sampler.Name(r.sampling.sampler) for r in service.requests]
    assert names == [f"SAMPLER_{s.upper()}" for s in SAMPLERS]


def test_the_dispatcher_reports_a_grpc_rendered_preview(servers, renderers, dispatchers):
    service = RecordingPreviews()
    dispatcher = dispatchers(renderers(servers(service), timeout=5))
    sink = Sink()
    dispatcher.submit(_request(6), sink)
    assert dispatcher.idle(WAIT)
    assert [p.step for p in sink.previews] == [6] and sink.notices == []
    assert "authorization" not in service.metadata[0]  # no token, no header


# ---- from_env --------------------------------------------------------------------------------------------------
def test_from_env_without_an_address_is_none():
    assert GrpcPreviewRenderer.from_env({}) is None
    assert GrpcPreviewRenderer.from_env({"TISTUDIO_PREVIEW_ADDRESS": "  ", "TISTUDIO_PREVIEW_TOKEN": "t"}) is None


def test_from_env_takes_the_address_and_the_token(servers):
    service = RecordingPreviews()
    address = servers(service)
    env = {
        "TISTUDIO_PREVIEW_ADDRESS": address,
        "TISTUDIO_PREVIEW_TOKEN": "tok",
        "TISTUDIO_PREVIEW_TIMEOUT_SECONDS": "5",
    }
    renderer = GrpcPreviewRenderer.from_env(env)
    try:
        assert renderer.address == address
        renderer.render(_request(2))
    finally:
        renderer.close()
    assert service.metadata[0]["authorization"] == "Bearer tok"


@pytest.mark.parametrize("bad", ["soon", "0", "-3", "nan"])
def test_from_env_refuses_a_bad_timeout_naming_it(bad):
    env = {"TISTUDIO_PREVIEW_ADDRESS": "127.0.0.1:1", "TISTUDIO_PREVIEW_TIMEOUT_SECONDS": bad}
    with pytest.raises(InvalidArgument) as raised:
        GrpcPreviewRenderer.from_env(env)
    assert raised.value.field == "TISTUDIO_PREVIEW_TIMEOUT_SECONDS"
    assert "TISTUDIO_PREVIEW_TIMEOUT_SECONDS" in raised.value.message and repr(bad) in raised.value.message


def test_from_env_refuses_an_infinite_timeout():
    env = {"TISTUDIO_PREVIEW_ADDRESS": "127.0.0.1:1", "TISTUDIO_PREVIEW_TIMEOUT_SECONDS": "inf"}
    with pytest.raises(InvalidArgument):
        GrpcPreviewRenderer.from_env(env)
