/**
 * The dashboard in a real browser (playwright-core driving Debian's chromium): log in with
 * the key through the form, see the functions and a chart, open a function, watch a live
 * log line arrive, open an invocation with its logs and waterfall; untrusted log text shows
 * as text (no script runs); the key never appears in any URL; no console errors; logout.
 * Screenshots go to $TEST_ARTIFACTS (default <tmp>/nimbus-artifacts).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = process.env.TEST_ARTIFACTS ?? join(tmpdir(), "nimbus-artifacts");

describe("dashboard (browser)", {
  skip: !existsSync(CHROMIUM) && !process.env.CI && "no /usr/bin/chromium",
}, () => {
  let s: TestServer;
  let browser: Browser;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await startTestServer();
    const d = await s.deploy("logger", "logger.ts");
    assert.equal(d.status, 200, JSON.stringify(d.body));
    for (let i = 0; i < 5; i++) await (await fetch(`${s.url}/fn/logger/?n=1&text=warmup`)).text();
    await (await fetch(`${s.url}/fn/logger/?n=1&level=error&text=boom&fail=1`)).text();
    const xss = encodeURIComponent(`<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`);
    await (await fetch(`${s.url}/fn/logger/?n=1&text=${xss}`)).text();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
  });
  after(async () => {
    await browser?.close();
    await s.stop();
    cleanup(s.dataDir);
  });

  it("logs in, shows charts and a function with its invocations, trace, logs and live tail; escapes; logs out", async () => {
    const page = await browser.newPage();
    const urls: string[] = [];
    const consoleErrors: string[] = [];
    page.on("request", (r) => urls.push(r.url()));
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    page.on("dialog", (d) => {
      consoleErrors.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });

    await page.goto(`${s.url}/dashboard`);
    assert.match(page.url(), /\/dashboard\/login$/);
    await page.getByLabel("API key").fill(s.adminKey);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForURL(`${s.url}/dashboard`);
    await page.locator("#functions tbody a", { hasText: "logger" }).waitFor();
    await page.locator(".chart canvas").first().waitFor();
    // First paint of the overview, measured on reloads (the first load also pays the browser's start).
    const paints: number[] = [];
    for (let i = 0; i < 3; i++) {
      await page.reload();
      await page.locator("#functions tbody a", { hasText: "logger" }).waitFor();
      paints.push(
        await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1),
      );
    }
    process.stdout.write(
      `# dashboard overview first-contentful-paint (3 reloads): ${paints.map((p) => p.toFixed(0)).join(", ")} ms\n`,
    );
    assert.ok(paints.every((p) => p > 0));
    const cookies = await page.evaluate(() => document.cookie);
    assert.doesNotMatch(cookies, /nimbus_session/, "the session cookie is HttpOnly");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-overview.png"), fullPage: true });

    await page.locator("#functions tbody a", { hasText: "logger" }).click();
    await page.waitForURL(`${s.url}/dashboard/fn/logger`);
    await page.locator("#tail-state", { hasText: "Live" }).waitFor();
    // A line logged now shows up in the live tail.
    await (await fetch(`${s.url}/fn/logger/?n=1&text=live-tail-line`)).text();
    await page.locator("#tail li", { hasText: "live-tail-line" }).waitFor({ timeout: 15_000 });
    // Untrusted text is shown as text.
    await page.locator("#tail li", { hasText: "<img src=x" }).first().waitFor();
    // Failed invocations only, then open one: its trace and logs.
    await page.getByLabel("Status").selectOption("error");
    await page.locator("#invocations tbody td", { hasText: "NIMBUS_FUNCTION_ERROR" }).first().waitFor();
    await page.locator("#invocations tbody button").first().click();
    await page.locator("#invocation .wf").waitFor();
    await page.locator("#invocation .log li", { hasText: "boom 0" }).waitFor();
    assert.ok((await page.locator("#invocation .wf .bar").count()) >= 2);
    await page.locator(".chart canvas").first().waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-function.png"), fullPage: true });
    assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
    assert.equal(await page.locator("#tail img, #invocation img").count(), 0);

    for (const u of urls) {
      assert.ok(!u.includes(s.adminKey) && !u.includes(encodeURIComponent(s.adminKey)), `key in URL ${u}`);
    }
    assert.deepEqual(consoleErrors, []);

    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(`${s.url}/dashboard/login`);
    const r = await page.request.get(`${s.url}/dashboard/api/overview`);
    assert.equal(r.status(), 401);
    await page.close();
  });

  it("the charts move after traffic (from the rollup)", async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${s.url}/dashboard/login`);
    await page.getByLabel("API key").fill(s.adminKey);
    await page.keyboard.press("Enter");
    await page.waitForURL(`${s.url}/dashboard`);
    const requests = async () =>
      (await (await page.request.get(`${s.url}/dashboard/api/fn/logger?range=1h`)).json()).usage
        .requests as number;
    const before = await requests();
    for (let i = 0; i < 7; i++) await (await fetch(`${s.url}/fn/logger/?n=0`)).text();
    await sleep(300);
    assert.equal(await requests(), before + 7);
    await ctx.close();
  });
});
