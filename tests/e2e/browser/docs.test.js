// Swagger UI on /docs in a real browser: the page loads with no request to any host but the
// server, POST /items expands, "Try it out" with a valid body, Execute, and the page shows the
// server's 200 answer. Usage: node docs.test.js URL
"use strict";
const { check, run } = require("./run.js");

const base = process.argv[2];
const origin = new URL(base).origin;

run("docs page", 60, async (browser) => {
  const page = await browser.newPage();
  const elsewhere = [];
  page.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith("data:") && !url.startsWith("blob:") && new URL(url).origin !== origin)
      elsewhere.push(url);
  });
  page.on("pageerror", (e) => console.error("page error: " + e.message));
  await page.goto(`${base}/docs`);

  const op = page.locator("#operations-basic-post_items");
  await op.waitFor({ timeout: 20000 });
  await op.locator(".opblock-summary").first().click();
  await op.locator("button.try-out__btn").click();
  const item = { name: "lamp", description: "from the docs page", price: 10, tax: 2.5 };
  await op.locator("textarea.body-param__text").fill(JSON.stringify(item));
  await op.locator("button.execute").click();

  const live = op.locator(".live-responses-table tbody .response").first();
  await live.waitFor({ timeout: 15000 });
  const code = (await live.locator(".response-col_status").textContent()).trim();
  check(code === "200", "the live response is 200, not " + code);
  const answer = await live.locator(".response-col_description").textContent();
  check(answer.includes("price_with_tax") && answer.includes("12.5"), "the answer is on the page: " + answer);
  check(elsewhere.length === 0, "no request left for another host: " + elsewhere.join(", "));
});
