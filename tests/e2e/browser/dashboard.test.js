// The jobs dashboard in a real browser (Debian's chromium through playwright-core): a sleep job
// submitted through the form shows its progress bar moving to 100% and ends completed; a long
// job is cancelled from its row's button; a bad payload shows the 422's messages; the rooms
// panel shows a room's live online count. Usage: node dashboard.test.js URL
"use strict";
const { chromium } = require("playwright-core");

const base = process.argv[2];
const deadline = setTimeout(() => { console.error("dashboard.test.js: timed out after 75 s"); process.exit(2); }, 75000);

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

// Submit through the form; the task id the page reports.
async function submit(page, type, payload, extra = {}) {
  await page.selectOption("#job-type", type);
  if (payload !== undefined) await page.fill("#job-payload", JSON.stringify(payload));
  for (const [id, v] of Object.entries(extra)) await page.fill(id, String(v));
  const before = await page.$eval("#submit-status", (el) => el.textContent);
  await page.click("#submit");
  await page.waitForFunction((b) => { const el = document.getElementById("submit-status"); return el.textContent && el.textContent !== b; }, before);
  const text = await page.$eval("#submit-status", (el) => el.textContent);
  const m = /Submitted task (\d+)/.exec(text);
  check(m, `submitting ${type} succeeds: ${text}`);
  const id = Number(m[1]);
  await page.waitForSelector(`tr[data-task-id="${id}"]`);
  return id;
}

const rowStatus = (page, id) => page.$eval(`tr[data-task-id="${id}"] .status`, (el) => el.textContent);

async function main() {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/dashboard`);
    await page.waitForFunction(() => document.getElementById("conn").textContent.startsWith("live"));

    // Each type prefills its payload.
    for (const type of ["sleep", "hash", "email", "exec", "noop"]) {
      await page.selectOption("#job-type", type);
      const payload = JSON.parse(await page.inputValue("#job-payload"));
      check(typeof payload === "object" && payload !== null, `${type} prefills a JSON object`);
    }

    // A sleep job: the page samples its row every 30 ms, so we can tell the bar moved live.
    const sleepId = await submit(page, "sleep", { steps: 4, seconds: 0.3 });
    await page.evaluate((id) => {
      window.seenProgress = [];
      window.sampler = setInterval(() => {
        const bar = document.querySelector(`tr[data-task-id="${id}"] progress`);
        if (bar && bar.hasAttribute("value")) window.seenProgress.push([bar.value, bar.max]);
      }, 30);
    }, sleepId);
    await page.waitForFunction((id) => {
      const tr = document.querySelector(`tr[data-task-id="${id}"]`);
      const bar = tr && tr.querySelector("progress");
      return tr && tr.querySelector(".status").textContent === "completed" && bar.max === 4 && bar.value === 4;
    }, sleepId, { timeout: 20000 });
    const seen = await page.evaluate(() => { clearInterval(window.sampler); return window.seenProgress; });
    const middle = seen.filter(([v, max]) => max === 4 && v > 0 && v < 4);
    check(middle.length > 0, "the progress bar showed a value between 0 and 100%: " + JSON.stringify(seen.slice(0, 50)));
    const values = seen.filter(([, max]) => max === 4).map(([v]) => v);
    check(values.every((v, i) => i === 0 || v >= values[i - 1]), "the progress bar never went back: " + JSON.stringify(values));
    check((await page.$eval(`tr[data-task-id="${sleepId}"] .result`, (el) => el.textContent)).includes("slept"),
          "the result is shown");
    check((await page.$$(`tr[data-task-id="${sleepId}"] .cancel`)).length === 0, "a finished job has no cancel button");

    // A long job, cancelled from its button.
    const longId = await submit(page, "sleep", { steps: 200, seconds: 0.5 });
    await page.waitForFunction((id) => ["pending", "running"].includes(
      document.querySelector(`tr[data-task-id="${id}"] .status`).textContent), longId);
    await page.waitForFunction((id) => document.querySelector(`tr[data-task-id="${id}"] .status`).textContent === "running",
                               longId, { timeout: 15000 });
    await page.click(`tr[data-task-id="${longId}"] .cancel`);
    await page.waitForFunction((id) => document.querySelector(`tr[data-task-id="${id}"] .status`).textContent === "cancelled",
                               longId, { timeout: 15000 });
    const server = await (await fetch(`${base}/tasks/${longId}`)).json();
    check(server.status === "cancelled", "the server says the job is cancelled: " + JSON.stringify(server));
    check((await page.$$(`tr[data-task-id="${longId}"] .cancel`)).length === 0, "a cancelled job has no cancel button");

    // A pending job (delayed) is cancelled at once.
    const delayedId = await submit(page, "noop", {}, { "#job-delay": 60 });
    await page.fill("#job-delay", "0");
    check(await rowStatus(page, delayedId) === "pending", "a delayed job is pending");
    await page.click(`tr[data-task-id="${delayedId}"] .cancel`);
    await page.waitForFunction((id) => document.querySelector(`tr[data-task-id="${id}"] .status`).textContent === "cancelled",
                               delayedId, { timeout: 5000 });

    // noop completes with {}; a bad payload is refused with the server's message.
    const noopId = await submit(page, "noop");
    await page.waitForFunction((id) => document.querySelector(`tr[data-task-id="${id}"] .status`).textContent === "completed",
                               noopId, { timeout: 10000 });
    await page.selectOption("#job-type", "hash");
    await page.fill("#job-payload", JSON.stringify({ rounds: 3 }));
    await page.click("#submit");
    await page.waitForFunction(() => document.getElementById("submit-status").textContent.includes("payload.data"));
    await page.fill("#job-payload", "{not json");
    await page.click("#submit");
    await page.waitForFunction(() => document.getElementById("submit-status").textContent.includes("not valid JSON"));

    // Rooms: a WebSocket member shows up in the panel with its count, and leaves it.
    const room = "dash" + (Date.now() % 100000);
    await page.evaluate(([b, r]) => {
      window.member = new WebSocket(b.replace(/^http/, "ws") + "/ws/" + r + "/alice");
      window.member2 = new WebSocket(b.replace(/^http/, "ws") + "/ws/" + r + "/bob");
    }, [base, room]);
    await page.waitForFunction((r) => {
      const li = document.querySelector(`#rooms li[data-room="${r}"]`);
      return li && li.querySelector(".online").textContent === "2";
    }, room, { timeout: 10000 });
    await page.evaluate(() => window.member2.close());
    await page.waitForFunction((r) => {
      const li = document.querySelector(`#rooms li[data-room="${r}"]`);
      return li && li.querySelector(".online").textContent === "1";
    }, room, { timeout: 10000 });

    check(errors.length === 0, "no page errors: " + errors.join("; "));
    console.log("dashboard page: ok");
  } finally {
    await browser.close();
  }
}

main().then(() => { clearTimeout(deadline); process.exit(0); },
            (e) => { console.error(e.stack || String(e)); process.exit(1); });
