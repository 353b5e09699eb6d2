// The page in a real browser: Debian's chromium, headless, driven by playwright-core (web/package.json, installed
// by scripts/setup into .data/node). Run by tests/python/test_page_browser.py against a running gsv:
//
//   node tests/browser/page.mjs BASE_URL OUT_DIR REFERENCE_WAV
//
// Loads the page, saves an uploaded reference as a voice, synthesises with it on the demo bundle, checks that the
// <audio> element plays the live stream and then the whole file, that the waveform is drawn and a WAV can be
// downloaded, that an API error is shown as the API returned it; screenshots in OUT_DIR. Exit 0 = pass.
import { createRequire } from "node:module";
import { mkdirSync, existsSync, rmSync } from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const nodeDir = path.resolve(here, "../../.data/node");
const require = createRequire(path.join(nodeDir, "package.json"));
const { chromium } = require("playwright-core");

const [base, outDir, refWav] = process.argv.slice(2);
if (!base || !outDir || !refWav) {
  console.error("usage: node tests/browser/page.mjs BASE_URL OUT_DIR REFERENCE_WAV");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const CHROMIUM = "/usr/bin/chromium";
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing (scripts/setup --export installs Debian's chromium)`);
  process.exit(1);
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("ok  " + what);
}

const userDir = path.join(outDir, "chromium-profile-" + process.pid);
// a fresh profile each run (playwright passes it as --user-data-dir)
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  viewport: { width: 1100, height: 900 },
  timeout: 60000,
});
const problems = [];
let exitCode = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push("console: " + m.text()); });
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));

  const resp = await page.goto(base + "/", { waitUntil: "load" });
  check(resp.status() === 200 && (resp.headers()["content-type"] || "").startsWith("text/html"), "GET / from a browser is the page");
  await page.waitForFunction(() => window.gsv && window.gsv.phase === "ready", null, { timeout: 30000 });
  const voices = await page.$$eval("#voice option", (os) => os.map((o) => o.value));
  check(voices.includes("default"), `voices listed (${voices.length - 1}): ${voices.join(", ").replace("\u0000", "")}`);
  const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  check(models.includes("default"), "models listed: " + models.join(", "));

  // upload a reference: it becomes a library voice
  await page.selectOption("#voice", "\u0000upload");
  check(await page.isVisible("#upload"), "upload form shown");
  await page.fill("#up-name", "browser-voice");
  await page.setInputFiles("#up-audio", refWav);
  await page.fill("#up-text", "今天天气很好，我们去公园散步。");
  await page.selectOption("#up-lang", "zh");
  await page.click("#up-save");
  await page.waitForFunction(() => window.gsv.phase === "saved" || window.gsv.phase === "error", null, { timeout: 30000 });
  check(await page.evaluate(() => window.gsv.phase) === "saved", "uploaded reference saved as a voice: " + JSON.stringify(await page.evaluate(() => window.gsv.error)));
  check(await page.$eval("#voice", (s) => s.value) === "browser-voice", "the new voice is selected");

  // synthesise with it, streaming
  await page.fill("#text", "春天来了，河边的柳树发芽了。今天天气很好。");
  await page.selectOption("#lang", "zh");
  await page.fill("#seed", "7");
  await page.click("#go");
  await page.waitForFunction(() => window.gsv.chunks > 0 || window.gsv.phase === "error", null, { timeout: 120000 });
  check(await page.evaluate(() => window.gsv.phase) !== "error", "synthesis started: " + JSON.stringify(await page.evaluate(() => window.gsv.error)));
  // the <audio> element plays the live stream
  const live = await page.waitForFunction(() => {
    const p = document.getElementById("player");
    return p.srcObject && !p.paused && p.currentTime > 0 ? { t: p.currentTime, tracks: p.srcObject.getAudioTracks().length } : null;
  }, null, { timeout: 30000, polling: 100 }).then((h) => h.jsonValue());
  check(live.tracks === 1 && live.t > 0, `<audio> plays the stream while it arrives (currentTime ${live.t.toFixed(2)} s)`);
  await page.waitForFunction(() => window.gsv.phase === "done" || window.gsv.phase === "error", null, { timeout: 180000 });
  const st = await page.evaluate(() => window.gsv);
  check(st.phase === "done" && st.bytes > 44 && st.sampleRate > 0, `stream complete: ${st.bytes} bytes at ${st.sampleRate} Hz in ${st.chunks} chunks, first audio after ${st.firstAudioMs} ms`);
  // the waveform is drawn
  const lit = await page.$eval("#wave", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200 && d[i] < 150) n++;
    return n;
  });
  check(lit > 5000, `waveform drawn (${lit} lit pixels)`);
  // the download link carries a WAV of the same audio
  const dl = await page.$eval("#download", async (a) => {
    const b = await (await fetch(a.href)).arrayBuffer();
    const u8 = new Uint8Array(b);
    return { hidden: a.hidden, size: b.byteLength, riff: String.fromCharCode(...u8.slice(0, 4)), name: a.download };
  });
  check(!dl.hidden && dl.riff === "RIFF" && dl.size === st.bytes && dl.name.endsWith("-7.wav"), `download: ${dl.name}, ${dl.size} bytes`);
  await page.screenshot({ path: path.join(outDir, "page.png"), fullPage: true });
  console.log("ok  screenshot " + path.join(outDir, "page.png"));
  // after the live stream has played out, the element holds the whole file: play it
  await page.waitForFunction(() => (document.getElementById("player").src || "").startsWith("blob:"), null, { timeout: 60000 });
  const replay = await page.evaluate(async () => {
    const p = document.getElementById("player");
    await p.play();
    await new Promise((r) => setTimeout(r, 700));
    return { duration: p.duration, t: p.currentTime };
  });
  check(replay.duration > 0.5 && replay.t > 0, `<audio> replays the whole file (${replay.duration.toFixed(2)} s, at ${replay.t.toFixed(2)} s)`);

  // an API error is shown as the API returned it
  await page.fill("#text", "");
  await page.click("#go");
  await page.waitForFunction(() => window.gsv.phase === "error", null, { timeout: 30000 });
  const err = await page.$eval("#error", (e) => ({ hidden: e.hidden, text: e.textContent }));
  check(!err.hidden && err.text.startsWith("HTTP 400") && err.text.includes("\"error\""), "API error shown: " + err.text.replace(/\n/g, " "));
  await page.screenshot({ path: path.join(outDir, "page-error.png"), fullPage: true });

  const foreign = requests.filter((u) => !u.startsWith(base) && !u.startsWith("blob:") && !u.startsWith("data:"));
  check(foreign.length === 0, "no request leaves the server (" + requests.length + " requests)");
  check(problems.length === 0, "no page errors" + (problems.length ? ": " + problems.join(" | ") : ""));
} catch (e) {
  console.error("FAIL " + (e && e.message ? e.message : e));
  if (problems.length) console.error(problems.join("\n"));
  exitCode = 1;
} finally {
  await browser.close();
  rmSync(userDir, { recursive: true, force: true });
}
process.exit(exitCode);
