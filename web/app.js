// gsv's page: pick a model and a voice (or upload a reference), type text, hear it while it streams.
// Plain JavaScript, no dependencies, nothing fetched from elsewhere. It talks to the same API as any client:
// GET /v1/models, GET /voices, POST /voices (multipart), POST /v1/audio/speech (WAV, "stream": true).
// Streamed PCM is played as it arrives through Web Audio, whose output is the <audio> element's live stream
// (a MediaStream); when the response ends, the same element gets the whole WAV for replay and download.
"use strict";

const $ = (id) => document.getElementById(id);
const LANGS = [["auto", "auto (detect)"], ["zh", "Chinese + English"], ["en", "English"], ["ja", "Japanese + English"],
  ["yue", "Cantonese + English"], ["ko", "Korean + English"], ["all_zh", "Chinese only"], ["all_ja", "Japanese only"],
  ["auto_yue", "auto (Cantonese)"], ["all_yue", "Cantonese only"], ["all_ko", "Korean only"]];
const UPLOAD = "\u0000upload";

// what the page is doing, for people (the info line) and for the browser test
const state = window.gsv = { phase: "idle", chunks: 0, bytes: 0, sampleRate: 0, firstAudioMs: null, error: null };
let abort = null;
let pcmParts = [];
let objectUrl = null;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("apikey").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showError(status, body) {
  state.phase = "error";
  state.error = { status, body };
  const e = $("error");
  e.textContent = status ? `HTTP ${status}\n${body}` : body;
  e.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
  state.error = null;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({}, opts, { headers: headers((opts || {}).headers) }));
  if (!r.ok) {
    const text = await r.text();
    const err = new Error(text);
    err.status = r.status;
    throw err;
  }
  return r;
}

function fillLangs(sel, value) {
  sel.innerHTML = "";
  for (const [code, label] of LANGS) sel.add(new Option(`${label} (${code})`, code, false, code === value));
}

async function loadModels() {
  const r = await api("/v1/models");
  const data = (await r.json()).data || [];
  const sel = $("model");
  const keep = sel.value;
  sel.innerHTML = "";
  for (const m of data) sel.add(new Option(m.id, m.id));
  if (keep) sel.value = keep;
}

async function loadVoices(select) {
  const r = await api("/voices");
  const list = await r.json();
  const sel = $("voice");
  const keep = select || sel.value;
  sel.innerHTML = "";
  for (const v of list) {
    const o = new Option(`${v.name} (${v.language}${v.source === "library" ? "" : ", " + v.source})`, v.name);
    o.title = v.text || "";
    sel.add(o);
  }
  sel.add(new Option("Upload a reference…", UPLOAD));
  if (keep && [...sel.options].some((o) => o.value === keep)) sel.value = keep;
  $("upload").hidden = sel.value !== UPLOAD;
  return list;
}

async function loadStatus() {
  try {
    const r = await fetch("/health");
    const h = await r.json();
    $("status").textContent = `${h.model} (${h.version}) · ${h.workers} worker${h.workers === 1 ? "" : "s"} · ${h.status}`;
  } catch (e) {
    $("status").textContent = "server unreachable";
  }
}

async function refresh() {
  clearError();
  try {
    await Promise.all([loadModels(), loadVoices()]);
    state.phase = "idle";
  } catch (e) {
    showError(e.status, e.message);
    if (e.status === 401) $("keybox").open = true;
  }
}

// ---- waveform ----
function drawWave(samples) {
  const c = $("wave");
  const g = c.getContext("2d");
  const w = c.width, h = c.height;
  g.fillStyle = "#0f172a";
  g.fillRect(0, 0, w, h);
  if (!samples.length) return;
  g.fillStyle = "#60a5fa";
  // scaled to the loudest sample so quiet audio is visible too
  let peak = 1;
  for (let i = 0; i < samples.length; i++) { const a = Math.abs(samples[i]); if (a > peak) peak = a; }
  const gain = 0.9 * 32768 / peak;
  const per = Math.max(1, Math.ceil(samples.length / w));
  for (let x = 0; x < w; x++) {
    let lo = 0, hi = 0;
    const start = x * per;
    if (start >= samples.length) break;
    for (let i = start; i < Math.min(samples.length, start + per); i++) {
      const s = samples[i] * gain / 32768;
      if (s < lo) lo = s;
      if (s > hi) hi = s;
    }
    const y0 = (1 - hi) * h / 2, y1 = (1 - lo) * h / 2;
    g.fillRect(x, y0, 1, Math.max(1, y1 - y0));
  }
}

function joinPcm() {
  const n = pcmParts.reduce((a, p) => a + p.length, 0);
  const out = new Int16Array(n);
  let o = 0;
  for (const p of pcmParts) { out.set(p, o); o += p.length; }
  return out;
}

function wavBlob(pcm, rate) {
  const b = new ArrayBuffer(44 + pcm.length * 2);
  const v = new DataView(b);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + pcm.length * 2, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data");
  v.setUint32(40, pcm.length * 2, true);
  new Int16Array(b, 44).set(pcm);
  return new Blob([b], { type: "audio/wav" });
}

// The WAV header gsv streams: RIFF/WAVE, fmt (PCM16), then "data" (size unknown). Returns [rate, data offset].
function parseWavHeader(u8) {
  const v = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const tag = (o) => String.fromCharCode(u8[o], u8[o + 1], u8[o + 2], u8[o + 3]);
  if (u8.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("the response is not a WAV stream");
  let o = 12, rate = 0;
  while (o + 8 <= u8.length) {
    const id = tag(o), size = v.getUint32(o + 4, true);
    if (id === "fmt ") {
      if (v.getUint16(o + 8, true) !== 1 || v.getUint16(o + 22, true) !== 16) throw new Error("expected PCM16 audio");
      rate = v.getUint32(o + 12, true);
    }
    if (id === "data") return [rate, o + 8];
    o += 8 + size;
  }
  return null; // header not complete yet
}

async function synthesize() {
  clearError();
  const voice = $("voice").value;
  if (voice === UPLOAD) { showError(0, "Save the uploaded reference as a voice first (or pick a voice)."); return; }
  const body = { model: $("model").value || undefined, voice, input: $("text").value, language: $("lang").value,
    speed: Number($("speed").value), response_format: "wav", stream: true };
  // a seed chosen here when none is given, so that the result can be reproduced (it is shown below)
  body.seed = $("seed").value !== "" ? Number($("seed").value) : Math.floor(Math.random() * 2 ** 31);
  Object.assign(state, { phase: "requesting", chunks: 0, bytes: 0, sampleRate: 0, firstAudioMs: null });
  $("go").disabled = true; $("stop").disabled = false; $("download").hidden = true; $("info").textContent = "";
  pcmParts = [];
  drawWave([]);
  abort = new AbortController();
  const t0 = performance.now();
  const ctx = new AudioContext();
  const sink = ctx.createMediaStreamDestination();
  const player = $("player");
  if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
  player.removeAttribute("src");
  player.srcObject = sink.stream;
  let nextTime = 0, header = new Uint8Array(0), rate = 0, carry = null, seed = null;
  try {
    const r = await fetch("/v1/audio/speech", { method: "POST", headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body), signal: abort.signal });
    if (!r.ok) { showError(r.status, await r.text()); return; }
    seed = r.headers.get("x-gsv-seed") || String(body.seed);
    state.phase = "streaming";
    player.play().catch(() => {});
    const reader = r.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let bytes = value;
      state.bytes += bytes.length;
      if (!rate) { // still reading the header
        const joined = new Uint8Array(header.length + bytes.length);
        joined.set(header); joined.set(bytes, header.length);
        const h = parseWavHeader(joined);
        if (!h) { header = joined; continue; }
        rate = h[0];
        state.sampleRate = rate;
        bytes = joined.subarray(h[1]);
      }
      if (carry !== null) { const j = new Uint8Array(bytes.length + 1); j[0] = carry; j.set(bytes, 1); bytes = j; carry = null; }
      if (bytes.length % 2) { carry = bytes[bytes.length - 1]; bytes = bytes.subarray(0, bytes.length - 1); }
      if (!bytes.length) continue;
      const pcm = new Int16Array(bytes.slice().buffer);
      pcmParts.push(pcm);
      state.chunks++;
      if (state.firstAudioMs === null) state.firstAudioMs = Math.round(performance.now() - t0);
      const buf = ctx.createBuffer(1, pcm.length, rate);
      const ch = buf.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(sink);
      nextTime = Math.max(nextTime, ctx.currentTime + 0.05);
      src.start(nextTime);
      nextTime += buf.duration;
      drawWave(joinPcm());
      $("info").textContent = `streaming… ${(pcmParts.reduce((a, p) => a + p.length, 0) / rate).toFixed(2)} s received`;
    }
    const pcm = joinPcm();
    if (!pcm.length) { showError(0, "the server sent no audio"); return; }
    const blob = wavBlob(pcm, rate);
    objectUrl = URL.createObjectURL(blob);
    const dl = $("download");
    dl.href = objectUrl; dl.hidden = false;
    dl.download = `gsv-${voice}-${seed || "seed"}.wav`;
    state.phase = "done";
    $("info").textContent = `${(pcm.length / rate).toFixed(2)} s at ${rate} Hz · first audio after ${state.firstAudioMs} ms · seed ${seed}`;
    // when the live stream has played out, the element gets the whole file (replay, seek)
    const left = Math.max(0, nextTime - ctx.currentTime);
    setTimeout(() => {
      player.srcObject = null;
      player.src = objectUrl;
      ctx.close();
    }, left * 1000 + 100);
  } catch (e) {
    if (e.name === "AbortError") { state.phase = "stopped"; $("info").textContent = "stopped"; }
    else showError(0, String(e.message || e));
  } finally {
    $("go").disabled = false; $("stop").disabled = true;
    abort = null;
    // a finished stream closes its audio context once it has played out; any other ending closes it now
    if (state.phase !== "done") ctx.close().catch(() => {});
  }
}

async function saveVoice(ev) {
  ev.preventDefault();
  clearError();
  const f = $("up-audio").files[0];
  if (!f) { showError(0, "choose an audio file"); return; }
  const fd = new FormData();
  fd.append("name", $("up-name").value.trim());
  fd.append("text", $("up-text").value);
  fd.append("language", $("up-lang").value);
  if ($("model").value && $("model").value !== "default") fd.append("model", $("model").value);
  fd.append("audio", f, f.name);
  $("up-save").disabled = true;
  try {
    const r = await api("/voices", { method: "POST", body: fd });
    const v = await r.json();
    await loadVoices(v.name);
    $("info").textContent = `voice ${v.name} saved`;
    state.phase = "saved";
  } catch (e) {
    showError(e.status, e.message);
  } finally {
    $("up-save").disabled = false;
  }
}

function init() {
  fillLangs($("lang"), "auto");
  fillLangs($("up-lang"), "zh");
  $("apikey").value = localStorage.getItem("gsv-api-key") || "";
  $("apikey").addEventListener("change", () => { localStorage.setItem("gsv-api-key", $("apikey").value.trim()); refresh(); });
  $("voice").addEventListener("change", () => { $("upload").hidden = $("voice").value !== UPLOAD; });
  $("speed").addEventListener("input", () => { $("speed-out").textContent = Number($("speed").value).toFixed(2); });
  $("go").addEventListener("click", synthesize);
  $("stop").addEventListener("click", () => abort && abort.abort());
  $("upload").addEventListener("submit", saveVoice);
  drawWave([]);
  loadStatus();
  refresh().then(() => { if (state.phase !== "error") state.phase = "ready"; });
}

document.addEventListener("DOMContentLoaded", init);
