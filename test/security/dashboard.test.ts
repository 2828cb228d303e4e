/**
 * Dashboard abuse: no session, no data; a wrong key gets no session; cross-site login and
 * logout posts are refused (CSRF); a session cookie is HttpOnly + SameSite=Strict and the
 * key is never echoed; pages carry a strict CSP.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cleanup, startTestServer, type TestServer } from "../helpers.ts";

const form = (o: Record<string, string>) => ({
  method: "POST",
  redirect: "manual" as const,
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(o).toString(),
});

describe("dashboard abuse", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("attack: dashboard data without a session → 401, pages redirect to the login form", async () => {
    const r = await fetch(`${s.url}/dashboard/api/overview`);
    assert.equal(r.status, 401);
    const p = await fetch(`${s.url}/dashboard`, { redirect: "manual" });
    assert.equal(p.status, 303);
    assert.equal(p.headers.get("location"), "/dashboard/login");
    // A bearer key is not a session: the dashboard API takes cookies only.
    const b = await fetch(`${s.url}/dashboard/api/overview`, {
      headers: { authorization: `Bearer ${s.adminKey}` },
    });
    assert.equal(b.status, 401);
  });

  it("attack: a wrong key at the login form → 401, no cookie, the key not echoed", async () => {
    const r = await fetch(`${s.url}/dashboard/login`, form({ key: "nmb_<script>alert(1)</script>" }));
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("set-cookie"), null);
    const html = await r.text();
    assert.doesNotMatch(html, /<script>alert/);
    assert.doesNotMatch(html, /nmb_/);
    assert.match(r.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  });

  it("attack: a cross-site login post (CSRF login) → 403, no session", async () => {
    const r = await fetch(`${s.url}/dashboard/login`, {
      ...form({ key: s.adminKey }),
      headers: { "content-type": "application/x-www-form-urlencoded", origin: "http://evil.example" },
    });
    assert.equal(r.status, 403);
    assert.equal(r.headers.get("set-cookie"), null);
  });

  it("attack: a logout post without the session's CSRF token → 403, the session lives on", async () => {
    const login = await fetch(`${s.url}/dashboard/login`, form({ key: s.adminKey }));
    assert.equal(login.status, 303);
    const setCookie = login.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.match(setCookie, /Path=\/dashboard/);
    assert.ok(!setCookie.includes(s.adminKey), "the cookie is a session id, not the key");
    assert.ok(!(login.headers.get("location") ?? "").includes(s.adminKey));
    const cookie = setCookie.split(";")[0]!;
    const forged = await fetch(`${s.url}/dashboard/logout`, {
      ...form({ csrf: "guessed" }),
      headers: { "content-type": "application/x-www-form-urlencoded", cookie },
    });
    assert.equal(forged.status, 403);
    const still = await fetch(`${s.url}/dashboard/api/overview`, { headers: { cookie } });
    assert.equal(still.status, 200);
    // The real token (from the page) logs out; the session is gone server-side.
    const page = await (await fetch(`${s.url}/dashboard`, { headers: { cookie } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const out = await fetch(`${s.url}/dashboard/logout`, {
      ...form({ csrf }),
      headers: { "content-type": "application/x-www-form-urlencoded", cookie },
    });
    assert.equal(out.status, 303);
    assert.equal((await fetch(`${s.url}/dashboard/api/overview`, { headers: { cookie } })).status, 401);
  });

  it("attack: path tricks on the static route and function names → 404/400, nothing outside is served", async () => {
    const login = await fetch(`${s.url}/dashboard/login`, form({ key: s.adminKey }));
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]!;
    for (const p of ["/dashboard/static/..%2f..%2fpackage.json", "/dashboard/static/%2e%2e%2fadmin.key"]) {
      const r = await fetch(`${s.url}${p}`);
      assert.equal(r.status, 404, p);
    }
    const bad = await fetch(`${s.url}/dashboard/fn/%3Cscript%3E`, { headers: { cookie } });
    assert.equal(bad.status, 400);
    // The refusal is JSON (never HTML a browser would run), and names the rule.
    assert.match(bad.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal((await bad.json()).error.code, "NIMBUS_BAD_FUNCTION_NAME");
  });
});
