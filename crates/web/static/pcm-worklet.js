// AudioBook's lossless capture: runs on the audio thread, turns the
// microphone's float samples into 16-bit mono PCM and posts them to the page
// in blocks of 4096 samples (about 85 ms at 48 kHz), each with the context
// frame of its first sample: `{frame, samples}`. While paused, samples are
// dropped here: a pause really pauses. The page cuts the stop at the frame it
// noted when Stop was pressed (a "stop" message can reach this thread late).
// Messages from the page: "pause", "resume", "flush" (answered "flushed" once
// the held samples are posted), "stop" (answered "stopped"; nothing follows).
class AudioBookPcm extends AudioWorkletProcessor {
  constructor() {
    super();
    this.stopped = false;
    this.paused = false;
    this.block = new Int16Array(4096);
    this.held = 0;
    this.blockFrame = 0;
    this.port.onmessage = (event) => {
      if (event.data === "pause") {
        this.paused = true;
      } else if (event.data === "resume") {
        this.paused = false;
      } else if (event.data === "flush") {
        this.post();
        this.port.postMessage("flushed");
      } else if (event.data === "stop") {
        this.post();
        this.stopped = true;
        this.port.postMessage("stopped");
      }
    };
  }

  post() {
    if (this.held === 0) return;
    const samples = this.block.slice(0, this.held);
    this.held = 0;
    this.port.postMessage({ frame: this.blockFrame, samples: samples.buffer }, [samples.buffer]);
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (this.paused || !input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      // Mono: the channels' mean, clipped to full scale.
      let s = 0;
      for (let c = 0; c < channels; c++) s += input[c][i];
      s = Math.max(-1, Math.min(1, s / channels));
      if (this.held === 0) this.blockFrame = currentFrame + i;
      this.block[this.held++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
      if (this.held === this.block.length) this.post();
    }
    return true;
  }
}

registerProcessor("audiobook-pcm", AudioBookPcm);
