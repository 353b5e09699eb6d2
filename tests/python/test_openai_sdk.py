"""The official OpenAI Python SDK (pinned in scripts/setup: openai==3.63.0) against `gsv` on the demo bundle.

Starts target/debug/gsv (built by scripts/test before pytest runs) on a free port and calls
`client.audio.speech.create(...)`, `.with_raw_response` and `.with_streaming_response`, for every `response_format`
(mp3 when absent; pcm is 24 kHz), and `stream_format="sse"`, then decodes every answer with an independent decoder
(Python's `wave` module and Debian's ffmpeg/ffprobe) and checks it against the WAV of the same seeded request:
codec, rate (= `X-GSV-Sample-Rate`), one channel, and the decoded length within one codec frame after the delays
the format cannot signal (a streamed MP3 has no LAME tag: 1105 samples; ADTS: 1024 samples of priming).
"""
import base64
import io
import json
import os
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import pytest

import openai  # pinned by scripts/setup; a missing package is a failure, not a skip

REPO_ROOT = Path(__file__).resolve().parents[2]
GSV = REPO_ROOT / "target" / "debug" / "gsv"
TEXT = "你好，世界。今天天气很好。"

# every response_format of OpenAI's spec, with the codec ffprobe must report
FORMATS = {"wav": "pcm_s16le", "pcm": "pcm_s16le", "mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac"}


@pytest.fixture(scope="module")
def server():
    if not GSV.is_file():
        pytest.fail(f"{GSV} is missing: build it first (cargo build; scripts/test does this before pytest)")
    env = dict(os.environ, GSV_LOG="info,ort=error")
    proc = subprocess.Popen([str(GSV), "-p", "0", "--intra-threads", "1"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = {}

    def read_first_line():
        line["text"] = proc.stdout.readline()

    t = threading.Thread(target=read_first_line, daemon=True)
    t.start()
    t.join(180)
    text = line.get("text", "")
    if "listening on" not in text:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"gsv did not start: {text!r}\n{err[-3000:]}")
    base = text.strip().rsplit(" ", 1)[-1]  # "gsv: listening on http://127.0.0.1:PORT"
    # drain stderr so the server never blocks on a full pipe
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    yield base
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="not-checked-without---api-key", timeout=120, max_retries=0)


def ffprobe(data: bytes, raw_rate: int | None = None) -> dict:
    """codec, sample rate, channels and decoded length of `data`, by Debian's ffprobe/ffmpeg."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        raw = ["-f", "s16le", "-ar", str(raw_rate), "-ac", "1"] if raw_rate else []
        p = subprocess.run(["ffprobe", "-v", "error", *raw, "-show_streams", "-of", "json", f.name],
                           capture_output=True, text=True, check=True)
        s = json.loads(p.stdout)["streams"]
        assert len(s) == 1, s
        d = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *raw, "-i", f.name, "-f", "s16le", "-acodec", "pcm_s16le", "-"],
                           capture_output=True, check=True)
        return {"codec": s[0]["codec_name"], "rate": int(s[0]["sample_rate"]), "channels": s[0]["channels"],
                "samples": len(d.stdout) // 2}


def wav_info(data: bytes) -> tuple[int, int, int, int]:
    """(channels, sample width, rate, frames) by Python's wave module; frames counted from the bytes, so that a
    streamed WAV with unknown sizes (0xFFFFFFFF) is measured too."""
    with wave.open(io.BytesIO(data)) as w:
        ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = len(w.readframes(1 << 30)) // (ch * width)
    return ch, width, rate, frames


def speech(client, fmt: str | None, **extra):
    args = {} if fmt is None else {"response_format": fmt}
    return client.audio.speech.with_raw_response.create(
        model="tts-1", voice="default", input=TEXT, extra_body={"seed": 7, **extra}, **args)


@pytest.fixture(scope="module")
def reference_wav(client):
    """The seeded request as WAV: every other format must have its duration."""
    r = speech(client, "wav")
    ch, width, rate, frames = wav_info(r.content)
    return rate, frames


def check_length(fmt: str, info: dict, streamed: bool, reference_wav):
    """Decoded length against the WAV's, at the stream's rate, after the delays the container cannot carry."""
    ref_rate, ref_frames = reference_wav
    n = round(ref_frames * info["rate"] / ref_rate)
    extra, frame = 0, (1 if info["rate"] != ref_rate or fmt in ("opus", "mp3") else 0)
    if fmt == "mp3" and streamed:
        extra, frame = 1105, 1152
    if fmt == "aac":
        extra, frame = 1024, 1024
    assert abs(info["samples"] - (n + extra)) <= frame, (fmt, streamed, info, n, extra)


def decode_any(fmt: str, data: bytes, rate_header: int) -> dict:
    info = ffprobe(data, rate_header if fmt == "pcm" else None)
    assert info["codec"] == FORMATS[fmt], info
    assert info["channels"] == 1
    assert info["rate"] == rate_header
    return info


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_response_format_decodes(client, reference_wav, fmt):
    r = speech(client, fmt)
    assert r.status_code == 200
    rate_header = int(r.headers["x-gsv-sample-rate"])
    data = r.content
    info = decode_any(fmt, data, rate_header)
    # everything but WAV is streamed by default (as OpenAI does)
    check_length(fmt, info, fmt != "wav", reference_wav)
    if fmt == "wav":
        ch, width, rate, frames = wav_info(data)
        assert (ch, width, rate) == (1, 2, rate_header) and frames == info["samples"]
    if fmt == "pcm":
        assert rate_header == 24000, "OpenAI's pcm is 24 kHz"
        assert len(data) % 2 == 0 and r.headers["content-type"] == "audio/pcm"


def test_default_response_format_is_mp3(client, reference_wav):
    r = speech(client, None)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    info = decode_any("mp3", r.content, int(r.headers["x-gsv-sample-rate"]))
    check_length("mp3", info, True, reference_wav)


def test_create_and_write_to_file(client, tmp_path):
    out = tmp_path / "speech.wav"
    client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav").write_to_file(out)
    ch, width, rate, frames = wav_info(out.read_bytes())
    assert (ch, width) == (1, 2) and rate > 0 and frames > rate // 10
    # no response_format: an MP3 file
    out = tmp_path / "speech.mp3"
    client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, instructions="Speak calmly.").write_to_file(out)
    assert ffprobe(out.read_bytes())["codec"] == "mp3"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_with_streaming_response(client, reference_wav, fmt):
    chunks = []
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="default", input=TEXT, response_format=fmt, extra_body={"seed": 7, "stream": True}) as r:
        assert r.status_code == 200
        rate = int(r.headers["x-gsv-sample-rate"])
        for c in r.iter_bytes():
            chunks.append(c)
    data = b"".join(chunks)
    assert len(chunks) >= 1 and len(data) > 0
    if fmt == "wav":
        ch, width, wrate, frames = wav_info(data)
        assert (ch, width, wrate) == (1, 2, rate)
        ref_rate, ref_frames = reference_wav
        assert frames == ref_frames
    else:
        check_length(fmt, decode_any(fmt, data, rate), True, reference_wav)


@pytest.mark.parametrize("fmt", ["mp3", "pcm", "opus", "aac"])
def test_stream_format_sse(client, reference_wav, fmt):
    events = []
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format=fmt, stream_format="sse",
            extra_body={"seed": 7}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        rate = int(r.headers["x-gsv-sample-rate"])
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
            else:
                assert line == "", line
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 3
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    u = done["usage"]
    assert u["input_tokens"] == len(TEXT) and u["output_tokens"] > 0
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    check_length(fmt, decode_any(fmt, audio, rate), True, reference_wav)


def test_bad_format_is_an_openai_error(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="default", input=TEXT, response_format="wma")
    assert e.value.status_code == 400
    assert e.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="default", input=TEXT, speed=5.0)
    assert e.value.body["param"] == "speed"
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.speech.create(model="no-such-model", voice="default", input=TEXT)
    assert e.value.body["code"] == "model_not_found"
