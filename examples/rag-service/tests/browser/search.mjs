// Drives the RAG service's search page (GET /) in Debian's headless Chromium
// and prints what a person would have seen, as one JSON object on stdout;
// tests/rag/browser.rs starts the service, runs this and asserts on it.
//
//   node search.mjs --url http://127.0.0.1:PORT --key KEY --query TEXT
//                   [--mode hybrid|vector|text] --screenshot PATH
//                   [--chromium /usr/bin/chromium] [--bad-key KEY]
//                   [--error-screenshot PATH]
//
// Steps: open /?key=KEY (the page takes the key from the address), type the
// query, pick the mode, press Search, read the results and the status line,
// save a screenshot; then search again with a wrong key and read the error
// the page shows. Exit code 0 when every step ran (the assertions are the
// Rust test's), 1 with a message on stderr when one could not.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    key: { type: "string" },
    query: { type: "string" },
    mode: { type: "string", default: "hybrid" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "bad-key": { type: "string", default: "not-a-valid-key" },
    "error-screenshot": { type: "string" },
  },
});
for (const required of ["url", "key", "query", "screenshot"]) {
  if (!opts[required]) {
    console.error(`search.mjs: --${required} is required`);
    process.exit(1);
  }
}

// Every wait below is bounded; this is the bound on all of them together.
const STEP_TIMEOUT_MS = 20_000;
const overall = setTimeout(() => {
  console.error("search.mjs: gave up after 90 s");
  process.exit(1);
}, 90_000);
overall.unref();

// The closed network here refuses Chromium's own connections (updates,
// sync, field trials): without these flags it stalls on them.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Playwright adds --user-data-dir itself for a persistent context: a fresh
// one per run, removed at the end.
const profile = mkdtempSync(join(tmpdir(), "reposmith-chromium-"));
const timings = {};
const pageErrors = [];
let context;
try {
  let started = Date.now();
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 800 },
    timeout: STEP_TIMEOUT_MS,
  });
  timings.launch_ms = Date.now() - started;
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => pageErrors.push(String(err)));

  started = Date.now();
  await page.goto(`${opts.url}/?key=${encodeURIComponent(opts.key)}`);
  const keyFromAddress = (await page.inputValue("#key")) === opts.key;
  const addressKeepsKey = new URL(page.url()).searchParams.has("key");

  await page.fill("#query", opts.query);
  await page.selectOption("#mode", opts.mode);
  await page.click("#go");
  await page.waitForSelector("body[data-state=done], body[data-state=error]");
  timings.search_ms = Date.now() - started;
  const search = await readPage(page);
  await page.screenshot({ path: opts.screenshot, fullPage: true });

  started = Date.now();
  await page.fill("#key", opts["bad-key"]);
  await page.click("#go");
  await page.waitForSelector("body[data-state=error]");
  timings.bad_key_ms = Date.now() - started;
  const badKey = await readPage(page);
  if (opts["error-screenshot"]) await page.screenshot({ path: opts["error-screenshot"], fullPage: true });

  console.log(
    JSON.stringify({
      key_from_address: keyFromAddress,
      address_keeps_key: addressKeepsKey,
      search,
      bad_key: badKey,
      page_errors: pageErrors,
      screenshot: opts.screenshot,
      timings,
    }),
  );
} catch (err) {
  console.error(`search.mjs: ${err && err.stack ? err.stack : err}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

/** What the page shows: its state, status line, error box and results. */
async function readPage(page) {
  return page.evaluate(() => {
    const text = (node) => (node ? node.textContent : null);
    const error = document.getElementById("error");
    const list = document.getElementById("results");
    return {
      // The documents' markup tries to set it: it must stay the page's own.
      document_title: document.title,
      state: document.body.dataset.state ?? null,
      status: text(document.getElementById("status")),
      error: error.hidden
        ? null
        : { code: text(error.querySelector(".code")), message: text(error.querySelector(".message")) },
      results: [...list.querySelectorAll(":scope > li")].map((item) => ({
        title: text(item.querySelector(".title")),
        source: text(item.querySelector(".source")),
        source_is_link: item.querySelector("a.source") !== null,
        metric: text(item.querySelector(".metric")),
        text: text(item.querySelector(".text")),
      })),
      // Every element inside the list: only the page's own tags may appear,
      // whatever markup the documents' titles or texts contain.
      tags: [...new Set([...list.querySelectorAll("*")].map((node) => node.tagName.toLowerCase()))].sort(),
    };
  });
}
