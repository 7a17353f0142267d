// The chat page in a real browser (Debian's chromium through playwright-core): two pages in one
// room see each other and each other's messages; a page whose connection drops reconnects and
// shows what it missed exactly once; an HTTP broadcast reaches both. Usage: node chat.test.js URL
"use strict";
const { chromium } = require("playwright-core");

const base = process.argv[2];
const room = "browser" + Date.now() % 100000;
const deadline = setTimeout(() => { console.error("chat.test.js: timed out after 60 s"); process.exit(2); }, 60000);

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function openPage(browser, user) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(user + " page error: " + e.message));
  await page.goto(`${base}/?room=${room}&user=${user}`);
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  return page;
}

const texts = (page) => page.$$eval("#messages li[data-id]", (els) => els.map((e) => e.textContent));

async function main() {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const alice = await openPage(browser, "alice");
    const bob = await openPage(browser, "bob");
    for (const [page, other] of [[alice, "bob"], [bob, "alice"]]) {
      await page.waitForFunction(() => document.getElementById("online").textContent === "2");
      await page.waitForFunction((u) => [...document.querySelectorAll("#users li")].some((li) => li.textContent === u), other);
    }

    await alice.fill("#text", "hello bob");
    await alice.click("#send");
    for (const page of [alice, bob])
      await page.waitForFunction(() => [...document.querySelectorAll("#messages li[data-id]")].some((li) => li.textContent === "alice: hello bob"));

    // bob's network drops; alice talks meanwhile; bob comes back with ?since= and sees it all.
    await bob.evaluate(() => window.roostChat.dropConnection());
    await bob.waitForFunction(() => document.getElementById("status").textContent !== "connected");
    for (const t of ["one", "two", "three"]) {
      await alice.fill("#text", t);
      await alice.click("#send");
    }
    await alice.waitForFunction(() => document.querySelectorAll("#messages li[data-id]").length === 4);
    await bob.waitForFunction(() => document.getElementById("status").textContent === "connected", null, { timeout: 15000 });
    await bob.waitForFunction(() => document.querySelectorAll("#messages li[data-id]").length >= 4);
    const seen = await texts(bob);
    check(JSON.stringify(seen) === JSON.stringify(["alice: hello bob", "alice: one", "alice: two", "alice: three"]),
          "bob sees every message once, in order: " + JSON.stringify(seen));

    const r = await fetch(`${base}/broadcast`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                body: JSON.stringify({ room, message: "from http" }) });
    check(r.status === 200, "POST /broadcast is 200");
    for (const page of [alice, bob])
      await page.waitForFunction(() => [...document.querySelectorAll("#messages li[data-id]")].some((li) => li.textContent === "[broadcast]: from http"));
    console.log("chat page: ok");
  } finally {
    await browser.close();
  }
}

main().then(() => { clearTimeout(deadline); process.exit(0); },
            (e) => { console.error(e.stack || String(e)); process.exit(1); });
