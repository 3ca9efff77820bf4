// End-to-end: real browsers (Debian's chromium through playwright-core) against a real
// `coursechat --demo` server. Run with `npm run e2e`.
//
//   E2E_BASE_URL      the server (required), e.g. http://127.0.0.1:18080; it must serve web/dist
//   E2E_RESTART_CMD   a shell command that restarts that server and returns (e.g. "e2e/server.sh
//                     restart"); data must survive the restart. Without it the restart test is skipped.
//   E2E_CHROMIUM      the browser (default /usr/bin/chromium)
//   E2E_JWT_SECRET    optional: the server's HS256 secret (in demo mode, the content of
//                     <data dir>/demo-jwt-secret); enables the token-expiry test.
//
// The demo users are discovered from /api/dev/users and classified through the REST API
// (tutor; students who have tutors; the student without the course), not hard-coded.

import { exec } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';

const BASE = (process.env.E2E_BASE_URL ?? '').replace(/\/$/, '');
const RESTART_CMD = process.env.E2E_RESTART_CMD ?? '';
const CHROMIUM = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium';
const JWT_SECRET = process.env.E2E_JWT_SECRET ?? '';
const HERE = dirname(fileURLToPath(import.meta.url));
const SHOTS = join(HERE, 'screenshots');
const RUN = Date.now().toString(36);

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const T = 15_000;

if (!BASE) {
  console.error('E2E_BASE_URL is not set (e.g. E2E_BASE_URL=http://127.0.0.1:18080).');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// helpers

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeout = T) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function http(method, path, { token, body } = {}) {
  const res = await fetch(BASE + path, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'Content-Type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

async function waitForServer(timeout = 60_000) {
  await until('the server to answer /healthz', async () => (await fetch(`${BASE}/healthz`)).ok, timeout);
}

function signJwt(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64(claims);
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Locators of the UI contract (roles and accessible names). */
const ui = {
  messageBox: (page) => page.getByRole('textbox', { name: 'Message' }),
  send: (page) => page.getByRole('button', { name: 'Send', exact: true }),
  log: (page) => page.getByRole('log'),
  banner: (page) => page.getByRole('status'),
  chatItem: (page, name) =>
    page.getByRole('navigation', { name: 'Chats' }).getByRole('button', { name: new RegExp(esc(name)) }),
  contact: (page, name) =>
    page
      .getByRole('region', { name: /Your (tutors|students)/ })
      .getByRole('button', { name: new RegExp(esc(name)) })
      .first(),
};

/** The unread badge of a chat list item ("3 unread"). */
const badge = (item) => item.locator('.badge');

async function signIn(page, name) {
  await page.goto(BASE + '/');
  await page.getByRole('button', { name: new RegExp(esc(name)) }).first().click({ timeout: T });
  await page.getByRole('navigation', { name: 'Chats' }).waitFor({ timeout: T });
}

async function send(page, text, { viaButton = false } = {}) {
  const box = ui.messageBox(page);
  await box.click();
  await box.fill(text);
  if (viaButton) await ui.send(page).click();
  else await box.press('Enter');
}

/** Waits until the message log shows exactly `times` messages whose text contains `text`. */
async function seeMessage(page, text, times = 1, timeout = T) {
  const rows = ui.log(page).locator('li.message[data-seq]').filter({ hasText: text });
  await until(`"${text}" x${times} in the log`, async () => (await rows.count()) === times, timeout);
  // And no duplicate shows up right after.
  await sleep(150);
  assert.equal(await rows.count(), times, `"${text}" should appear exactly ${times} time(s)`);
}

async function connected(page, timeout = 30_000) {
  await until('the connection banner to go away', async () => (await ui.banner(page).count()) === 0, timeout);
}

async function shot(page, name, viewport) {
  const previous = page.viewportSize();
  if (viewport) await page.setViewportSize(viewport);
  await sleep(250);
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
  if (viewport && previous) await page.setViewportSize(previous);
}

/** A socket.io WebSocket route that can be cut and restored, to force one client offline. */
async function cuttableSocket(page) {
  const state = { blocked: false, live: [] };
  await page.routeWebSocket(/\/socket\.io\//, (ws) => {
    if (state.blocked) {
      ws.close({ code: 1001, reason: 'e2e: offline' });
      return;
    }
    const server = ws.connectToServer();
    state.live.push({ ws, server });
  });
  return {
    async cut() {
      state.blocked = true;
      for (const { ws, server } of state.live.splice(0)) {
        await ws.close({ code: 1001, reason: 'e2e: cut' }).catch(() => {});
        await server.close().catch(() => {});
      }
    },
    restore() {
      state.blocked = false;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the run

let browser;
let users; // { tutor, student, unenrolled, course }
let studentCtx, tutorCtx;
let s1, s2, tutorPage, s2Socket;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  await waitForServer();
  const dev = await http('GET', '/api/dev/users');
  assert.equal(dev.status, 200, 'the server must run with --demo (GET /api/dev/users)');
  const all = dev.json.users;
  const tokenOf = async (id) => (await http('POST', '/api/dev/token', { body: { userId: id } })).json.token;
  const tutor = all.find((u) => u.role === 'tutor');
  assert.ok(tutor, 'a demo tutor');
  let student;
  let unenrolled;
  let course;
  for (const u of all.filter((x) => x.role === 'user')) {
    const r = await http('GET', '/api/users/available-tutors', { token: await tokenOf(u.id) });
    assert.equal(r.status, 200, `available-tutors for ${u.id}: ${JSON.stringify(r.json)}`);
    const mine = r.json.tutors.find((t) => t.id === tutor.id);
    if (mine && !student) {
      student = u;
      course = mine.courses[0];
    }
    if (r.json.tutors.length === 0 && !unenrolled) unenrolled = u;
  }
  assert.ok(student, 'a demo student enrolled with the tutor');
  users = { tutor, student, unenrolled, course };

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  studentCtx = await browser.newContext({ viewport: DESKTOP });
  tutorCtx = await browser.newContext({ viewport: DESKTOP });
});

after(async () => {
  await browser?.close();
});

describe('coursechat web client', { concurrency: false }, () => {
  test('demo sign-in lists every demo user as a button', { timeout: 60_000 }, async () => {
    const page = await studentCtx.newPage();
    await page.goto(BASE + '/');
    const dev = await http('GET', '/api/dev/users');
    for (const u of dev.json.users) {
      await page.getByRole('button', { name: new RegExp(esc(u.name)) }).first().waitFor({ timeout: T });
    }
    await shot(page, 'signin-desktop');
    await shot(page, 'signin-phone', PHONE);
    await page.close();
  });

  test('a student and a tutor exchange messages; typing and "Seen" are shown', { timeout: 90_000 }, async () => {
    const { tutor, student } = users;
    s1 = await studentCtx.newPage();
    tutorPage = await tutorCtx.newPage();

    await signIn(s1, student.name);
    await ui.contact(s1, tutor.name).click();
    await ui.messageBox(s1).waitFor({ timeout: T });

    await signIn(tutorPage, tutor.name);
    await ui.contact(tutorPage, student.name).click();
    await ui.messageBox(tutorPage).waitFor({ timeout: T });
    await connected(s1);
    await connected(tutorPage);

    // Typing: the tutor sees the student typing.
    await ui.messageBox(s1).click();
    await s1.keyboard.type(`hello tutor ${RUN}`, { delay: 40 });
    await tutorPage.getByText(`${student.name} is typing…`).waitFor({ timeout: T });
    await s1.keyboard.press('Enter');
    await seeMessage(tutorPage, `hello tutor ${RUN}`);
    await seeMessage(s1, `hello tutor ${RUN}`);

    // The tutor's open chat marks it read: the student sees "Seen" under their last message.
    await s1.getByText('Seen', { exact: true }).waitFor({ timeout: T });
    const seenRow = s1.locator('li.message.own').last();
    assert.match(await seenRow.innerText(), new RegExp(`hello tutor ${RUN}[\\s\\S]*Seen`));

    // The typing indicator ends with the message.
    await until('typing indicator to clear', async () =>
      (await tutorPage.getByText(`${student.name} is typing…`).count()) === 0,
    );

    // The tutor answers with the Send button.
    await send(tutorPage, `hi student ${RUN}`, { viaButton: true });
    await seeMessage(s1, `hi student ${RUN}`);

    // Shift+Enter adds a line; Enter sends the whole thing as one message.
    const box = ui.messageBox(s1);
    await box.click();
    await s1.keyboard.type(`line one ${RUN}`);
    await s1.keyboard.press('Shift+Enter');
    await s1.keyboard.type(`line two ${RUN}`);
    assert.equal(await box.inputValue(), `line one ${RUN}\nline two ${RUN}`);
    await s1.keyboard.press('Enter');
    await seeMessage(tutorPage, `line one ${RUN}`);
    const multi = tutorPage.locator('li.message').filter({ hasText: `line one ${RUN}` });
    assert.match(await multi.innerText(), new RegExp(`line one ${RUN}\\s*\\n\\s*line two ${RUN}`));

    // Content is text, never HTML.
    const html = `<b>bold ${RUN}</b><img src=x onerror="window.__xss=1">`;
    await send(s1, html);
    await seeMessage(tutorPage, `<b>bold ${RUN}</b>`);
    assert.equal(await ui.log(tutorPage).locator('b, img').count(), 0, 'no markup rendered');
    assert.equal(await tutorPage.evaluate(() => window.__xss), undefined);

    // Both chat lists show the chat with the last message.
    await until('student chat list preview', async () =>
      (await ui.chatItem(s1, tutor.name).innerText()).includes(`bold ${RUN}`),
    );
    await until('tutor chat list preview', async () =>
      (await ui.chatItem(tutorPage, student.name).innerText()).includes(`bold ${RUN}`),
    );

    await shot(s1, 'student-desktop');
    await shot(tutorPage, 'tutor-desktop');
    await shot(s1, 'student-phone', PHONE);
    await shot(tutorPage, 'tutor-phone', PHONE);
  });

  test('a second tab of the student stays in sync (messages, reads, unread counts)', { timeout: 90_000 }, async () => {
    const { tutor, student } = users;
    s2 = await studentCtx.newPage();
    s2Socket = await cuttableSocket(s2);
    await signIn(s2, student.name);
    await connected(s2);
    const item = ui.chatItem(s2, tutor.name);
    await item.waitFor({ timeout: T });

    // The tutor writes; tab 1 (chat open) reads it; tab 2 (list only) gets the message and then
    // the read, so its badge ends at zero.
    await send(tutorPage, `to both tabs ${RUN}`);
    await seeMessage(s1, `to both tabs ${RUN}`);
    await until('tab 2 list shows the new message', async () => (await item.innerText()).includes(`to both tabs ${RUN}`));
    await until('tab 2 unread badge cleared by tab 1 reading', async () => (await badge(item).count()) === 0);

    // Tab 2 opens the chat: full history, no duplicates.
    await item.click();
    await seeMessage(s2, `hello tutor ${RUN}`);
    await seeMessage(s2, `to both tabs ${RUN}`);

    // A message sent in tab 2 appears in tab 1 (as the student's own) and for the tutor.
    await send(s2, `from tab two ${RUN}`);
    await seeMessage(s1, `from tab two ${RUN}`);
    await seeMessage(tutorPage, `from tab two ${RUN}`);
    assert.equal(await s1.locator('li.message.own').filter({ hasText: `from tab two ${RUN}` }).count(), 1);

    // Unread while the chat is not open in any student tab: switch both tabs to phone width
    // and go back to the list, then the tutor writes.
    for (const p of [s1, s2]) {
      await p.setViewportSize(PHONE);
      await p.getByRole('button', { name: 'Back to chats' }).click();
    }
    await send(tutorPage, `badge check ${RUN}`);
    for (const p of [s1, s2]) {
      await until('unread badge in both tabs', async () => /^1\s*unread$/.test(await badge(ui.chatItem(p, tutor.name)).innerText()));
    }
    // Reading in tab 1 clears tab 2.
    await ui.chatItem(s1, tutor.name).click();
    await seeMessage(s1, `badge check ${RUN}`);
    await until('tab 2 badge cleared after tab 1 read', async () => (await badge(ui.chatItem(s2, tutor.name)).count()) === 0);
    await ui.chatItem(s2, tutor.name).click();
    for (const p of [s1, s2]) await p.setViewportSize(DESKTOP);
  });

  test('a client cut off while messages are sent gets them all on re-join, once', { timeout: 90_000 }, async (t) => {
    let cutDone = false;
    t.after(() => {
      if (!cutDone) s2Socket.restore();
    });
    await s2Socket.cut();
    await ui.banner(s2).filter({ hasText: /Reconnecting/ }).waitFor({ timeout: T });
    await shot(s2, 'student-reconnecting-desktop');

    for (let i = 1; i <= 3; i++) await send(tutorPage, `while away ${i} ${RUN}`);
    for (let i = 1; i <= 3; i++) await seeMessage(s1, `while away ${i} ${RUN}`);
    // Written while offline: shown at once as sending, delivered after the reconnect.
    await send(s2, `queued offline ${RUN}`);
    await s2.getByText('Sending…').waitFor({ timeout: T });

    s2Socket.restore();
    await connected(s2, 30_000);
    cutDone = true;
    for (let i = 1; i <= 3; i++) await seeMessage(s2, `while away ${i} ${RUN}`);
    await seeMessage(s2, `queued offline ${RUN}`);
    await seeMessage(tutorPage, `queued offline ${RUN}`);
    await seeMessage(s1, `queued offline ${RUN}`);

    // Order is seq order in the reconnected tab.
    const texts = await ui.log(s2).locator('li.message[data-seq]').allInnerTexts();
    const idx = [1, 2, 3].map((i) => texts.findIndex((t) => t.includes(`while away ${i} ${RUN}`)));
    assert.deepEqual([...idx].sort((a, b) => a - b), idx, 'missed messages in order');
  });

  test('a server restart loses nothing', { timeout: 120_000, skip: !RESTART_CMD && 'E2E_RESTART_CMD not set' }, async () => {
    const before1 = await ui.log(s1).locator('li.message[data-seq]').count();
    const beforeT = await ui.log(tutorPage).locator('li.message[data-seq]').count();

    const sawBanner = ui.banner(s1).filter({ hasText: /Reconnecting/ }).waitFor({ timeout: 30_000 }).then(
      () => true,
      () => false,
    );
    const restart = new Promise((resolve, reject) =>
      exec(RESTART_CMD, { cwd: join(HERE, '..') }, (err, stdout, stderr) =>
        err ? reject(new Error(`E2E_RESTART_CMD failed: ${err.message}\n${stdout}\n${stderr}`)) : resolve(),
      ),
    );
    assert.equal(await sawBanner, true, 'the reconnecting banner is shown');
    await restart;
    await waitForServer();
    for (const p of [s1, s2, tutorPage]) await connected(p, 45_000);

    // Everything from before is still there, exactly once.
    assert.equal(await ui.log(s1).locator('li.message[data-seq]').count(), before1);
    assert.equal(await ui.log(tutorPage).locator('li.message[data-seq]').count(), beforeT);

    await send(tutorPage, `after restart tutor ${RUN}`);
    await seeMessage(s1, `after restart tutor ${RUN}`);
    await seeMessage(s2, `after restart tutor ${RUN}`);
    await send(s1, `after restart student ${RUN}`);
    await seeMessage(tutorPage, `after restart student ${RUN}`);
    await seeMessage(s2, `after restart student ${RUN}`);

    // A fresh load of the history agrees with what the live pages show.
    const fresh = await studentCtx.newPage();
    await signIn(fresh, users.student.name);
    await ui.chatItem(fresh, users.tutor.name).click();
    await seeMessage(fresh, `hello tutor ${RUN}`);
    await seeMessage(fresh, `queued offline ${RUN}`);
    await seeMessage(fresh, `after restart student ${RUN}`);
    await fresh.close();
  });

  test('older messages load when scrolling up, keeping the position', { timeout: 120_000 }, async () => {
    const { tutor, course } = users;
    // Another enrolled student, so this chat's history is this test's own.
    const dev = await http('GET', '/api/dev/users');
    const other = dev.json.users.find((u) => u.role === 'user' && u.id !== users.student.id && u.id !== users.unenrolled?.id);
    assert.ok(other, 'a second enrolled demo student');
    const token = (await http('POST', '/api/dev/token', { body: { userId: other.id } })).json.token;
    const created = await http('POST', '/api/chats', { token, body: { participantId: tutor.id, courseId: course.id } });
    assert.ok([200, 201].includes(created.status), `POST /api/chats: ${JSON.stringify(created.json)}`);
    const chatId = created.json.chat.id;

    // Seed 70 messages over a socket (paced for the 10/s rate limit), more than one page of 50.
    const socket = io(BASE, { transports: ['websocket'], auth: { token }, reconnection: false });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    for (let i = 1; i <= 70; i++) {
      for (;;) {
        const ack = await socket.timeout(10_000).emitWithAck('send_message', {
          chatId,
          clientMsgId: `seed-${RUN}-${i}`,
          content: `history ${i} ${RUN}`,
        });
        if (ack.ok) break;
        assert.equal(ack.error?.code, 'rate_limited', JSON.stringify(ack));
        await sleep(1000);
      }
      await sleep(90);
    }
    socket.close();

    const ctx = await browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    await signIn(page, other.name);
    await ui.chatItem(page, tutor.name).click();
    await seeMessage(page, `history 70 ${RUN}`);
    const log = ui.log(page);
    const first = log.locator('li.message[data-seq]').filter({ hasText: `history 1 ${RUN}` });
    assert.equal(await first.count(), 0, 'the first page holds only the newest messages');

    for (let round = 0; round < 20 && (await first.count()) === 0; round++) {
      await log.evaluate((el) => el.scrollTo(0, 0));
      await sleep(400);
    }
    await seeMessage(page, `history 1 ${RUN}`);
    // Loading older pages keeps the view where the user was instead of jumping to the end.
    const top = await log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
    assert.ok(top > 200, `view stayed near the older messages (distance from the end: ${top})`);
    for (let i = 1; i <= 70; i++) {
      assert.equal(
        await log.locator('li.message[data-seq]').filter({ hasText: `history ${i} ${RUN}` }).count(),
        1,
        `history ${i} exactly once`,
      );
    }
    await ctx.close();
  });

  test('a student without the course sees "no courses" and the upgrade prompt', { timeout: 60_000 }, async () => {
    const { unenrolled, tutor } = users;
    assert.ok(unenrolled, 'the demo seeds a student without the course');
    const ctx = await browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    await signIn(page, unenrolled.name);
    await page.getByText('You have no courses yet').waitFor({ timeout: T });

    const token = (await http('POST', '/api/dev/token', { body: { userId: unenrolled.id } })).json.token;
    const chats = (await http('GET', '/api/chats', { token })).json.chats;
    assert.ok(chats.length > 0, 'the demo seeds a chat this student had');
    const title = chats[0].course.title;

    await ui.chatItem(page, tutor.name).click();
    const prompt = page.getByRole('alert').filter({ hasText: /Upgrade/ });
    await prompt.waitFor({ timeout: T });
    assert.match(await prompt.innerText(), new RegExp(esc(title)));
    assert.equal(await ui.messageBox(page).count(), 0, 'no composer in a refused chat');
    await shot(page, 'upgrade-prompt-desktop');
    await shot(page, 'upgrade-prompt-phone', PHONE);
    await ctx.close();
  });

  test('a host token in ?token= signs in and is stripped from the URL', { timeout: 60_000 }, async () => {
    const { student } = users;
    const token = (await http('POST', '/api/dev/token', { body: { userId: student.id } })).json.token;
    const ctx = await browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    await page.goto(`${BASE}/?token=${encodeURIComponent(token)}`);
    await page.getByRole('navigation', { name: 'Chats' }).waitFor({ timeout: T });
    assert.ok(!page.url().includes('token='), `URL still has the token: ${page.url()}`);
    assert.equal(await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage })).then((s) => s.includes(token)), false);
    await ctx.close();
  });

  test('a host page hands over the token by postMessage', { timeout: 60_000 }, async (t) => {
    const { tutor } = users;
    const token = (await http('POST', '/api/dev/token', { body: { userId: tutor.id } })).json.token;
    const ctx = await browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    const origin = new URL(BASE).origin;
    // The platform page is served by a real local server on another port: another origin, and
    // a loopback one (Chromium refuses to frame a loopback server from a public origin).
    const html = `<!doctype html><title>Platform</title>
<iframe id="chat" src="${BASE}/" style="width:1000px;height:700px"></iframe>
<script>
  const frame = document.getElementById('chat');
  const hand = () => frame.contentWindow.postMessage(
    { type: 'coursechat:token', token: ${JSON.stringify(token)} }, ${JSON.stringify(origin)});
  window.addEventListener('message', (e) => {
    if (e.source === frame.contentWindow && e.data && e.data.type === 'coursechat:token-request') hand();
  });
  frame.addEventListener('load', () => setTimeout(hand, 500));
</script>`;
    const platformServer = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(html);
    });
    await new Promise((r) => platformServer.listen(0, '127.0.0.1', r));
    t.after(() => platformServer.close());
    const platform = `http://127.0.0.1:${platformServer.address().port}/course`;
    await page.goto(platform);
    const frame = page.frameLocator('#chat');
    // In demo mode the frame first shows the demo sign-in; the posted token wins either way.
    await frame.getByRole('navigation', { name: 'Chats' }).waitFor({ timeout: T });
    await frame.getByText(tutor.name).first().waitFor({ timeout: T });
    await ctx.close();
  });

  test('an expired token ends the session with a notice', { timeout: 60_000, skip: !JWT_SECRET && 'E2E_JWT_SECRET not set' }, async () => {
    const { student } = users;
    const now = Math.floor(Date.now() / 1000);
    const token = signJwt({ sub: student.id, role: 'user', name: student.name, iat: now, exp: now + 4 }, JWT_SECRET);
    const ctx = await browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    await page.goto(`${BASE}/?token=${encodeURIComponent(token)}`);
    await page.getByRole('navigation', { name: 'Chats' }).waitFor({ timeout: T });
    // exp + 5 s leeway, then the server's error + DISCONNECT.
    await page.getByText('Session expired').waitFor({ timeout: 30_000 });
    await shot(page, 'session-expired-desktop');
    await ctx.close();
  });
});

// Keep an unexpected hang from holding CI forever.
setTimeout(() => {
  console.error('e2e: global timeout');
  process.exit(1);
}, 15 * 60_000).unref();

