// The dashboard's live charts in a real browser (Debian's chromium through playwright-core):
// while load runs (requests to /json, a WebSocket in a room with broadcasts, noop jobs), the page
// receives a snapshot a second from /metrics/stream and its uPlot charts draw and move. Asserts
// on the data the page holds (window.roostCharts), then saves a screenshot.
// Usage: node metrics_charts.test.js URL [SCREENSHOT.png]
"use strict";
const http = require("http");
const { chromium } = require("playwright-core");

const base = process.argv[2];
const shot = process.argv[3];
const deadline = setTimeout(() => { console.error("metrics_charts.test.js: timed out after 80 s"); process.exit(2); }, 80000);

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

// Keeps `n` requests to /json in flight until stop() (keep-alive agent).
function load(n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n });
  let running = true, sent = 0;
  const one = () => {
    if (!running) return;
    http.get(base + "/json", { agent }, (res) => { res.resume(); res.on("end", () => { sent++; one(); }); })
      .on("error", () => setTimeout(one, 50));
  };
  for (let i = 0; i < n; i++) one();
  return { stop: () => { running = false; agent.destroy(); }, sent: () => sent };
}

const snapshot = (page) => page.evaluate(() => {
  const c = window.roostCharts;
  return { n: c.snapshots, draws: c.draws, plots: Object.keys(c.plots).length, data: c.data };
});

async function main() {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const traffic = load(8);
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/dashboard`);
    check(await page.evaluate(() => typeof uPlot === "function"), "uPlot is loaded from the server");
    // WebSocket traffic and jobs, from the page itself.
    await page.evaluate(async () => {
      const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws/charts/alice");
      await new Promise((ok) => { ws.onopen = ok; });
      window.chartWs = ws;
      window.extraLoad = setInterval(() => {
        fetch("/broadcast", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ room: "charts", message: "tick" }) });
        fetch("/tasks", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ type: "noop" }) });
      }, 100);
    });
    await page.waitForFunction(() => window.roostCharts.snapshots >= 3, null, { timeout: 20000 });
    const a = await snapshot(page);
    await page.waitForFunction((n) => window.roostCharts.snapshots >= n + 3, a.n, { timeout: 20000 });
    const b = await snapshot(page);

    check(a.plots === 6 && (await page.$$(".uplot")).length === 6, "six charts were made");
    check(b.draws > a.draws, `the charts redrew (${a.draws} -> ${b.draws})`);
    const last = (k) => b.data[k][b.data[k].length - 1];
    check(b.data.t.length > a.data.t.length && last("t") > a.data.t[a.data.t.length - 1], "the time axis moved on");
    const rps = b.data.rps.slice(-3);
    check(rps.every((v) => v > 5), `requests per second under load: ${rps}`);
    check(b.data.p99_ms.slice(-3).some((v) => v > 0), "a p99 latency was drawn");
    check(b.data.p99_ms.slice(-3).every((v, i) => v >= b.data.p50_ms.slice(-3)[i]), "p99 >= p50");
    check(b.data.ws.slice(-2).some((v) => v >= 1), `the open WebSocket is counted: ${b.data.ws.slice(-3)}`);
    check(b.data.fanout_per_s.slice(-3).some((v) => v > 0), "broadcasts fan out");
    check(b.data.jobs_per_s.slice(-3).some((v) => v > 0), "jobs finish");
    check(errors.length === 0, "no page errors: " + errors.join("; "));
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    console.log(`ok: ${b.n} snapshots, ${b.draws} draws, ${traffic.sent()} requests sent`);
  } finally {
    traffic.stop();
    await browser.close();
  }
}

main().then(() => { clearTimeout(deadline); process.exit(0); }, (e) => { console.error(e.stack || e.message); process.exit(1); });
