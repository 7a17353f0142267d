// The dashboard with --api-key set, in a real browser (Debian's chromium through playwright-core):
// the page shows no data and asks for the key; a wrong key is refused; the right one signs it in
// (an HttpOnly cookie that the page's scripts cannot read, and no key kept in storage), after
// which a job submitted through the form reaches 100% with its progress coming over an
// EventSource, while a client without the cookie is still refused. Usage: node
// dashboard_auth.test.js URL KEY
"use strict";
const { check, run } = require("./run");

const [base, key] = process.argv.slice(2);

run("dashboard with an API key", 75, async (browser) => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Count the task events that EventSource streams deliver (they carry no header: the cookie).
  await page.addInitScript(() => {
    window.taskEvents = 0;
    const Real = window.EventSource;
    window.EventSource = function (url, opts) {
      const es = new Real(url, opts);
      if (/\/tasks\/\d+\/events/.test(url)) es.addEventListener("task", () => { window.taskEvents++; });
      return es;
    };
    window.EventSource.prototype = Real.prototype;
  });
  await page.goto(`${base}/dashboard`);

  // Refused: the page asks for the key and shows nothing.
  await page.waitForSelector("#login", { state: "visible", timeout: 10000 });
  await page.waitForFunction(() => document.getElementById("conn").textContent === "API key needed");
  check((await page.$$("tr[data-task-id]")).length === 0, "no job rows without a key");

  await page.fill("#api-key", "not-the-key");
  await page.click("#sign-in");
  await page.waitForFunction(() => document.getElementById("login-status").textContent === "Wrong key");
  check(await page.isVisible("#login"), "still asking after a wrong key");

  await page.fill("#api-key", key);
  await page.click("#sign-in");
  await page.waitForSelector("#login", { state: "hidden", timeout: 10000 });
  await page.waitForFunction(() => document.getElementById("conn").textContent.startsWith("live"), null, { timeout: 10000 });

  // The session is a cookie the scripts cannot read; the key is kept nowhere.
  const seen = await page.evaluate(() => ({
    cookie: document.cookie,
    storage: JSON.stringify(Object.assign({}, sessionStorage, localStorage)),
    field: document.getElementById("api-key").value,
  }));
  check(!seen.cookie.includes("roost_session"), "the session cookie is HttpOnly: " + seen.cookie);
  check(!seen.storage.includes(key) && seen.field === "", "the key is not kept: " + JSON.stringify(seen));
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "roost_session");
  check(session && session.httpOnly && session.sameSite === "Strict", "cookie: " + JSON.stringify(cookies));

  // A job through the form, its progress over the event stream, to completion.
  await page.selectOption("#job-type", "sleep");
  await page.fill("#job-payload", JSON.stringify({ steps: 6, seconds: 0.4 }));
  await page.click("#submit");
  await page.waitForFunction(() => /Submitted task \d+/.test(document.getElementById("submit-status").textContent));
  const id = Number(/Submitted task (\d+)/.exec(await page.textContent("#submit-status"))[1]);
  await page.waitForFunction((i) => {
    const tr = document.querySelector(`tr[data-task-id="${i}"]`);
    return tr && tr.querySelector(".status").textContent === "completed";
  }, id, { timeout: 20000 });
  check(await page.evaluate(() => window.taskEvents) > 0, "task events arrived over EventSource");

  // The same data without the cookie (another client) is still refused.
  const anon = await fetch(`${base}/tasks/${id}`);
  check(anon.status === 401, "no cookie, no data: " + anon.status);
  const anonEvents = await fetch(`${base}/tasks/${id}/events`);
  check(anonEvents.status === 401, "no cookie, no event stream: " + anonEvents.status);

  check(errors.length === 0, "no page errors: " + errors.join("; "));
});
