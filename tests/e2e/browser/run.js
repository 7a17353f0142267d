// What a browser test needs around its steps: Debian's chromium through playwright-core, a
// deadline, check(), and the exit code (0 passed, 1 failed, 2 timed out). A test file calls
// run("name", seconds, async (browser) => { ... }).
"use strict";
const { chromium } = require("playwright-core");

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

function run(name, seconds, steps) {
  const timer = setTimeout(() => { console.error(`${name}: timed out after ${seconds} s`); process.exit(2); },
                           seconds * 1000);
  const main = async () => {
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
    try {
      await steps(browser);
    } finally {
      await browser.close();
    }
  };
  main().then(() => { clearTimeout(timer); console.log(`${name}: ok`); process.exit(0); },
              (e) => { console.error(e.stack || String(e)); process.exit(1); });
}

module.exports = { check, run };
