// Shared helpers for the coursechat Node.js suites (node:test + official socket.io-client v4).
// Everything here has a bounded timeout so that no test can hang, and every server process
// started here is killed on teardown (and, as a last resort, when the test process exits).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { io } from 'socket.io-client';
import {
  clusterNodes, testRedisUrl, testMongoUrl, withDatabase, clusterIdentity, readClusterIdentity, cleanupCluster, CLEANUP_SCRIPT,
} from './cluster.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.COURSECHAT_BIN
  ? path.resolve(process.env.COURSECHAT_BIN)
  : path.resolve(here, '../../target/debug/coursechat');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- formats

export const HEX24 = /^[0-9a-f]{24}$/;
// RFC 3339, UTC, with milliseconds, e.g. 2024-05-01T12:34:56.789Z
export const RFC3339_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// ---------------------------------------------------------------- unique ids

let counter = 0;
/** A unique id matching [A-Za-z0-9_-]{1,64}. */
export function uid(prefix = 'u') {
  counter += 1;
  return `${prefix}_${process.pid.toString(36)}${counter.toString(36)}_${randomBytes(3).toString('hex')}`;
}

// ---------------------------------------------------------------- server process

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * Spawn one `coursechat` process and wait for its "listening on" line.
 * Resolves to {proc, port, exited, logs()}; on failure the process is killed and the error thrown.
 */
async function spawnNode(fullEnv, args, timeoutMs, label = 'coursechat') {
  const proc = spawn(BIN, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(proc);
  let output = '';
  const MAX = 2_000_000;
  const append = (chunk) => {
    output += chunk.toString('utf8');
    if (output.length > MAX) output = output.slice(output.length - MAX);
  };
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      liveChildren.delete(proc);
      resolve({ code, signal });
    });
  });

  const port = await new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn(v);
    };
    const scan = (chunk) => {
      append(chunk);
      // eslint-disable-next-line no-control-regex
      const clean = output.replace(/\x1b\[[0-9;]*m/g, '');
      const m = clean.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) finish(resolve, Number(m[1]));
    };
    proc.stdout.on('data', scan);
    proc.stderr.on('data', scan);
    proc.on('error', (e) => finish(reject, e));
    exited.then(({ code, signal }) => finish(reject, new Error(`${label} exited early (code ${code}, signal ${signal}):\n${output.slice(-4000)}`)));
    const timer = setTimeout(() => finish(reject, new Error(`${label} did not print "listening on" within ${timeoutMs} ms:\n${output.slice(-4000)}`)), timeoutMs);
  }).catch((e) => {
    try { proc.kill('SIGKILL'); } catch { /* ignore */ }
    throw e;
  });
  return { proc, port, exited, logs: () => output };
}

/** SIGTERM one process, SIGKILL it if it has not exited 4 s later. */
async function stopProc(proc, exited) {
  if (proc.exitCode === null && proc.signalCode === null) {
    try { proc.kill('SIGTERM'); } catch { /* ignore */ }
    const res = await Promise.race([exited, sleep(4000).then(() => null)]);
    if (res === null) {
      try { proc.kill('SIGKILL'); } catch { /* ignore */ }
      await Promise.race([exited, sleep(2000)]);
    }
  }
}

/**
 * Start `coursechat serve` on an ephemeral port with a fresh data dir.
 * Resolves to {url, port, secret, dataDir, proc, adminToken, logs(), stop(), exited}.
 *
 * In cluster mode (COURSECHAT_CLUSTER_NODES=N) this starts N nodes sharing Redis and MongoDB
 * instead; see startCluster().
 */
export async function startServer({ env = {}, args = ['serve'], secret, timeoutMs = 20000, keepDataDir = false, dataDir } = {}) {
  if (!existsSync(BIN)) throw new Error(`coursechat binary not found at ${BIN} (set COURSECHAT_BIN or run cargo build)`);
  if (CLUSTER_NODES > 0) return startCluster({ env, args, secret, timeoutMs, keepDataDir, dataDir });
  secret = secret ?? `test-secret-${randomBytes(12).toString('hex')}`;
  dataDir = dataDir ?? mkdtempSync(path.join(tmpdir(), 'coursechat-node-'));
  const fullEnv = {
    ...process.env,
    CHAT_JWT_SECRET: secret,
    CHAT_ADDR: '127.0.0.1:0',
    CHAT_DATA_DIR: dataDir,
    CHAT_DRAIN_SECONDS: '2',
    NO_COLOR: '1',
    ...env,
  };
  for (const [k, v] of Object.entries(fullEnv)) if (v === undefined || v === null) delete fullEnv[k];
  const { proc, port, exited, logs } = await spawnNode(fullEnv, args, timeoutMs).catch((e) => {
    if (!keepDataDir) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  });

  const url = `http://127.0.0.1:${port}`;
  const srv = {
    url,
    port,
    secret,
    dataDir,
    proc,
    exited,
    logs,
    adminToken: null,
    async stop() {
      closeAllSockets(srv);
      await stopProc(proc, exited);
      if (!keepDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
    sockets: new Set(),
  };
  srv.adminToken = mint(srv, uid('admin'), 'admin', { name: 'Platform Admin' });
  return srv;
}

// ---------------------------------------------------------------- cluster mode

/** Nodes per started server: 0 in single-node mode (COURSECHAT_CLUSTER_NODES unset). */
export const CLUSTER_NODES = clusterNodes();
/** True in cluster mode (for tests that must adapt to several processes). */
export const CLUSTER = CLUSTER_NODES > 0;

// Backends (Redis prefix, MongoDB database) of clusters not cleaned up yet, by prefix. A cluster
// stopped with keepDataDir stays here until removeServerData(); whatever is left is removed at
// process exit as a last resort (synchronously, through the cleanup CLI of cluster.mjs).
const pendingCleanup = new Map();
process.on('exit', () => {
  for (const c of pendingCleanup.values()) {
    try {
      spawnSync(process.execPath, [CLEANUP_SCRIPT, 'cleanup', c.redisUrl, c.prefix, c.mongoUrl], { stdio: 'ignore', timeout: 30000 });
    } catch { /* best effort */ }
  }
});

async function releaseBackend(backend) {
  pendingCleanup.delete(backend.prefix);
  await cleanupCluster(backend);
}

/**
 * Cluster mode: N `coursechat serve` processes with one JWT secret, one Redis prefix and one
 * MongoDB database, each with its own data dir (`dataDir/node-<i>`) and node id. The returned
 * object looks like a single server to the helpers: every socket (rawSocket, rawEio, rawUpgrade)
 * takes the next node in turn, and so does every REST call (api), on separate counters, so that
 * consecutive sockets are on different nodes and so are consecutive REST calls. `srv.url` and
 * `srv.port` are round-robin getters too. `proc` and `exited` stand for all nodes (a signal goes
 * to every node; `exited` resolves once all have exited, with code 0 only if all exited 0);
 * `nodes` has each node's own {index, nodeId, url, port, dataDir, proc, exited, logs()}; a node
 * can be passed to the helpers in place of srv to aim at that node only.
 *
 * The Redis prefix and database name are kept in `dataDir/cluster.json`: starting again on the
 * same dataDir (keepDataDir) restarts the same cluster. stop() removes them unless keepDataDir;
 * then removeServerData(dataDir) does.
 */
async function startCluster({ env = {}, args = ['serve'], secret, timeoutMs = 20000, keepDataDir = false, dataDir } = {}) {
  const mongoBase = testMongoUrl(); // throws (before anything is made) when it is not set
  secret = secret ?? `test-secret-${randomBytes(12).toString('hex')}`;
  dataDir = dataDir ?? mkdtempSync(path.join(tmpdir(), 'coursechat-node-'));
  const ident = clusterIdentity(dataDir);
  const backend = { redisUrl: testRedisUrl(), prefix: ident.prefix, mongoUrl: withDatabase(mongoBase, ident.db) };
  pendingCleanup.set(backend.prefix, backend);

  const startNode = (i) => {
    const nodeDir = path.join(dataDir, `node-${i}`);
    mkdirSync(nodeDir, { recursive: true });
    const nodeId = `cc-${ident.tag}-n${i}`;
    const fullEnv = {
      ...process.env,
      CHAT_JWT_SECRET: secret,
      CHAT_ADDR: '127.0.0.1:0',
      CHAT_DATA_DIR: nodeDir,
      CHAT_DRAIN_SECONDS: '2',
      NO_COLOR: '1',
      CHAT_REDIS_URL: backend.redisUrl,
      CHAT_REDIS_PREFIX: backend.prefix,
      CHAT_MONGODB_URL: backend.mongoUrl,
      CHAT_NODE_ID: nodeId,
      ...env,
    };
    for (const [k, v] of Object.entries(fullEnv)) if (v === undefined || v === null) delete fullEnv[k];
    return spawnNode(fullEnv, args, timeoutMs, `coursechat node ${i} (${nodeId})`).then((n) => ({
      ...n, index: i, nodeId, dataDir: nodeDir, url: `http://127.0.0.1:${n.port}`,
    }));
  };
  // Node 0 first: it creates the MongoDB collections and indexes of a fresh database. (Several
  // nodes creating the same collection at once is fine for MongoDB, but the test mongod under Wine
  // crashes on that path: an access violation after "Conflicted registering namespace".)
  // Then the others at once.
  const first = await Promise.allSettled([startNode(0)]);
  const started = first[0].status === 'fulfilled'
    ? [...first, ...(await Promise.allSettled(Array.from({ length: CLUSTER_NODES - 1 }, (_, i) => startNode(i + 1))))]
    : first;
  const failed = started.filter((r) => r.status === 'rejected');
  if (failed.length) {
    const nodes = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    await Promise.all(nodes.map((n) => stopProc(n.proc, n.exited)));
    if (!keepDataDir) {
      await releaseBackend(backend);
      rmSync(dataDir, { recursive: true, force: true });
    }
    throw failed[0].reason;
  }
  const nodes = started.map((r) => r.value);

  const turn = { socket: 0, rest: 0, any: 0 };
  const next = (kind) => nodes[turn[kind]++ % nodes.length];
  const running = () => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const proc = {
    nodes: nodes.map((n) => n.proc),
    get pid() { return nodes[0].proc.pid; },
    kill(signal = 'SIGTERM') {
      for (const n of running()) {
        try { n.proc.kill(signal); } catch { /* ignore */ }
      }
      return true;
    },
    // null while any node runs; then the first non-zero exit code (null if it died of a signal), else 0
    get exitCode() {
      if (running().length) return null;
      const bad = nodes.find((n) => n.proc.exitCode !== 0);
      return bad ? bad.proc.exitCode : 0;
    },
    get signalCode() {
      if (running().length) return null;
      return nodes.find((n) => n.proc.signalCode !== null)?.proc.signalCode ?? null;
    },
  };
  const exited = Promise.all(nodes.map((n) => n.exited)).then((results) => {
    const bad = results.find((r) => r.code !== 0);
    return { code: bad ? bad.code : 0, signal: results.find((r) => r.signal)?.signal ?? null, nodes: results };
  });

  const srv = {
    get url() { return next('any').url; },
    get port() { return next('any').port; },
    /** The node for the next socket ({url, port}). */
    nextSocketNode: () => next('socket'),
    /** The node for the next REST call ({url, port}). */
    nextRestNode: () => next('rest'),
    nodes,
    cluster: { ...backend, nodeCount: nodes.length },
    secret,
    dataDir,
    proc,
    exited,
    logs: () => nodes.map((n) => `===== node ${n.index} (${n.nodeId}) =====\n${n.logs()}`).join('\n'),
    adminToken: null,
    async stop() {
      closeAllSockets(srv);
      await Promise.all(nodes.map((n) => stopProc(n.proc, n.exited)));
      // with keepDataDir the backend stays for a restart; removeServerData(dataDir) removes it
      if (!keepDataDir) {
        await releaseBackend(backend);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
    sockets: new Set(),
  };
  srv.adminToken = mint(srv, uid('admin'), 'admin', { name: 'Platform Admin' });
  // Each node can stand in for srv to aim at that node only (sockets still closed by srv.stop()).
  for (const n of nodes) Object.assign(n, { secret, adminToken: srv.adminToken, sockets: srv.sockets });
  return srv;
}

/**
 * Remove a data dir that a test kept across restarts (keepDataDir). In cluster mode also the
 * cluster's Redis keys and MongoDB database. Call it after the last stop().
 */
export async function removeServerData(dir) {
  if (CLUSTER) {
    const ident = readClusterIdentity(dir);
    if (ident) {
      await releaseBackend({ redisUrl: testRedisUrl(), prefix: ident.prefix, mongoUrl: withDatabase(testMongoUrl(), ident.db) });
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** The node for the next socket: srv itself on one node, the next node in turn in a cluster. */
const socketTarget = (srv) => (srv.nextSocketNode ? srv.nextSocketNode() : srv);
/** The node for the next REST call: srv itself on one node, the next node in turn in a cluster. */
const restTarget = (srv) => (srv.nextRestNode ? srv.nextRestNode() : srv);

// ---------------------------------------------------------------- tokens

/**
 * Mint an HS256 JWT for the server. opts: {exp (absolute seconds), ttl (seconds, default 3600),
 * name, secret, algorithm, extra claims, omitExp, nbf}.
 */
export function mint(srv, sub, role, opts = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub, role, iat: now, ...(opts.extra ?? {}) };
  if (!opts.omitExp) payload.exp = opts.exp ?? now + (opts.ttl ?? 3600);
  if (opts.name !== undefined) payload.name = opts.name;
  if (opts.nbf !== undefined) payload.nbf = opts.nbf;
  if (opts.omitIat) delete payload.iat;
  const secret = opts.secret ?? srv.secret;
  return jwt.sign(payload, secret, { algorithm: opts.algorithm ?? 'HS256', noTimestamp: true });
}

// ---------------------------------------------------------------- REST

/** Bounded fetch. Resolves to {status, headers, body (parsed JSON or null), text}. */
export async function api(srv, method, urlPath, { token, body, headers = {}, rawBody, timeoutMs = 8000 } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  let payload;
  if (rawBody !== undefined) payload = rawBody;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
  }
  const res = await fetch(restTarget(srv).url + urlPath, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let parsed = null;
  try { parsed = text.length ? JSON.parse(text) : null; } catch { parsed = null; }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Like api(), but asserts the expected status and returns the body. */
export async function apiOk(srv, method, urlPath, expectedStatus, opts) {
  const r = await api(srv, method, urlPath, opts);
  if (r.status !== expectedStatus) {
    throw new Error(`${method} ${urlPath}: expected ${expectedStatus}, got ${r.status} ${r.text.slice(0, 500)}`);
  }
  return r.body;
}

export const putUser = (srv, id, name, role) =>
  apiOk(srv, 'PUT', `/api/admin/users/${id}`, 200, { token: srv.adminToken, body: { name, role } });
export const putCourse = (srv, id, title, tutorIds) =>
  apiOk(srv, 'PUT', `/api/admin/courses/${id}`, 200, { token: srv.adminToken, body: { title, tutorIds } });
export const enroll = (srv, userId, courseId) =>
  apiOk(srv, 'PUT', '/api/admin/enrollments', 200, { token: srv.adminToken, body: { userId, courseId } });
export const unenroll = (srv, userId, courseId) =>
  apiOk(srv, 'DELETE', `/api/admin/enrollments/${userId}/${courseId}`, 204, { token: srv.adminToken });

/** Create (or fetch) the chat between `who` and participantId in courseId; returns {status, chat}. */
export async function createChat(srv, token, participantId, courseId) {
  const r = await api(srv, 'POST', '/api/chats', { token, body: { participantId, courseId } });
  if (r.status !== 201 && r.status !== 200) {
    throw new Error(`POST /api/chats: expected 201/200, got ${r.status} ${r.text.slice(0, 500)}`);
  }
  return { status: r.status, chat: r.body.chat };
}

/**
 * A course with `tutors` tutors and `students` enrolled students (plus `outsiders` students
 * without the course). Every person is {id, name, role, token}.
 */
export async function setupCourse(srv, { students = 2, tutors = 1, outsiders = 0, prefix } = {}) {
  const p = prefix ?? uid('w');
  const mk = async (kind, role, i) => {
    const id = `${p}_${kind}${i}`;
    const name = `${kind.toUpperCase()} ${i} of ${p}`;
    await putUser(srv, id, name, role);
    return { id, name, role, token: mint(srv, id, role, { name }) };
  };
  const tutorList = [];
  for (let i = 0; i < tutors; i++) tutorList.push(await mk('t', 'tutor', i));
  const courseId = `${p}_course`;
  const title = `Course ${p}`;
  await putCourse(srv, courseId, title, tutorList.map((t) => t.id));
  const studentList = [];
  for (let i = 0; i < students; i++) {
    const s = await mk('s', 'user', i);
    await enroll(srv, s.id, courseId);
    studentList.push(s);
  }
  const outsiderList = [];
  for (let i = 0; i < outsiders; i++) outsiderList.push(await mk('o', 'user', i));
  return { prefix: p, courseId, title, tutors: tutorList, students: studentList, outsiders: outsiderList };
}

// ---------------------------------------------------------------- sockets

function closeAllSockets(srv) {
  for (const s of srv.sockets) {
    try { s.disconnect(); } catch { /* ignore */ }
  }
  srv.sockets.clear();
}

/** Create a socket (not awaited) that records every event it receives in socket.log. */
export function rawSocket(srv, token, extra = {}) {
  const opts = {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    ...extra,
  };
  if (token !== undefined) opts.auth = { token };
  const socket = io(socketTarget(srv).url, opts);
  socket.log = [];
  socket.onAny((event, ...args) => socket.log.push({ event, data: args[0], args, at: Date.now() }));
  socket.on('disconnect', (reason, details) => socket.log.push({ event: '$disconnect', data: reason, details, at: Date.now() }));
  srv.sockets.add(socket);
  return socket;
}

/** Connect and resolve once connected; rejects with the connect_error (or a timeout). */
export function connect(srv, token, extra = {}, timeoutMs = 6000) {
  const socket = rawSocket(srv, token, extra);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error(`socket did not connect within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('connect_error', (err) => { clearTimeout(timer); socket.disconnect(); reject(err); });
  });
}

/** Expect the connection to be refused: resolves with {err, socket} for the connect_error. */
export function connectExpectError(srv, token, extra = {}, timeoutMs = 6000) {
  const socket = rawSocket(srv, token, extra);
  const managerClose = new Promise((resolve) => socket.io.once('close', (reason) => resolve({ reason, at: Date.now() })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.disconnect(); reject(new Error(`no connect_error within ${timeoutMs} ms`)); }, timeoutMs);
    socket.once('connect', () => { clearTimeout(timer); socket.disconnect(); reject(new Error('socket connected but a connect_error was expected')); });
    socket.once('connect_error', (err) => { clearTimeout(timer); resolve({ err, socket, managerClose, at: Date.now() }); });
  });
}

/** emit with ack, bounded. Rejects on timeout. */
export function emitAck(socket, event, payload, timeoutMs = 5000) {
  return socket.timeout(timeoutMs).emitWithAck(event, payload);
}

/** Current position in a socket's event log (for waitFor / eventsSince). */
export const mark = (socket) => socket.log.length;

/**
 * Wait for `event` on `socket` whose first argument satisfies `predicate`, looking at events
 * from log position `from` (default: now). Resolves with the first argument.
 */
export async function waitFor(socket, event, predicate = () => true, timeoutMs = 3000, { from } = {}) {
  return (await waitForEntry(socket, event, predicate, timeoutMs, { from })).data;
}

/** Same as waitFor but resolves with the log entry (including `at`, the arrival time). */
export function waitForEntry(socket, event, predicate = () => true, timeoutMs = 3000, { from } = {}) {
  const start = from ?? socket.log.length;
  return new Promise((resolve, reject) => {
    const check = () => {
      for (let i = start; i < socket.log.length; i++) {
        const e = socket.log[i];
        if (e.event === event) {
          let ok = false;
          try { ok = predicate(e.data); } catch { ok = false; }
          if (ok) return e;
        }
      }
      return null;
    };
    const found = check();
    if (found) return resolve(found);
    const iv = setInterval(() => {
      const f = check();
      if (f) { clearInterval(iv); clearTimeout(timer); resolve(f); }
    }, 5);
    const timer = setTimeout(() => {
      clearInterval(iv);
      const seen = socket.log.slice(start).map((e) => `${e.event} ${JSON.stringify(e.data)?.slice(0, 200)}`);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"; events seen: ${seen.length ? seen.join(' | ') : '(none)'}`));
    }, timeoutMs);
  });
}

/** Events named `event` received since log position `from` (optionally filtered). */
export function eventsSince(socket, from, event, predicate = () => true) {
  return socket.log.slice(from).filter((e) => e.event === event && predicate(e.data)).map((e) => e.data);
}

/** Wait until the socket is disconnected; resolves with {reason, at}. */
export function waitDisconnect(socket, timeoutMs = 5000) {
  if (socket.disconnected && socket.log.some((e) => e.event === '$disconnect')) {
    const e = socket.log.find((x) => x.event === '$disconnect');
    return Promise.resolve({ reason: e.data, at: e.at });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket not disconnected within ${timeoutMs} ms`)), timeoutMs);
    socket.once('disconnect', (reason) => { clearTimeout(timer); resolve({ reason, at: Date.now() }); });
  });
}

/** Send a text message and return the ack. */
let msgCounter = 0;
export function send(socket, chatId, content, { clientMsgId, timeoutMs = 5000, ...rest } = {}) {
  msgCounter += 1;
  return emitAck(socket, 'send_message', { chatId, clientMsgId: clientMsgId ?? `cm-${Date.now()}-${msgCounter}-${randomBytes(3).toString('hex')}`, content, ...rest }, timeoutMs);
}

/** Send and assert ok; returns the message. */
export async function sendOk(socket, chatId, content, opts) {
  const ack = await send(socket, chatId, content, opts);
  if (!ack || ack.ok !== true) throw new Error(`send_message failed: ${JSON.stringify(ack)}`);
  return ack.message;
}

// ---------------------------------------------------------------- raw HTTP (upgrade requests)

/** Send a raw websocket upgrade request; resolves to {status, headers, body}. */
export function rawUpgrade(srv, { origin, pathAndQuery = '/socket.io/?EIO=4&transport=websocket', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const headers = {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    };
    if (origin) headers.Origin = origin;
    const req = http.request({ host: '127.0.0.1', port: socketTarget(srv).port, path: pathAndQuery, method: 'GET', headers });
    const timer = setTimeout(() => { req.destroy(); reject(new Error('upgrade request timed out')); }, timeoutMs);
    req.on('upgrade', (res, sock) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode, headers: res.headers, body }); });
    });
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.end();
  });
}

/** Assert helper text for error bodies. */
export function isErrorBody(body, code) {
  return body && typeof body === 'object' && body.error && body.error.code === code && typeof body.error.message === 'string' && body.error.message.length > 0;
}

// ---------------------------------------------------------------- raw Engine.IO / Socket.IO frames (ws)

/**
 * A raw websocket to /socket.io/ that records every text frame. Used only where the official client
 * hides what the contract specifies (the server closing after CONNECT_ERROR, heartbeats, slow consumers).
 * opts: {autoPong=true, origin, headers}
 */
export async function rawEio(srv, { autoPong = true, headers = {}, timeoutMs = 5000 } = {}) {
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${socketTarget(srv).port}/socket.io/?EIO=4&transport=websocket`, { headers });
  const r = {
    ws,
    frames: [],
    closed: null,
    autoPong,
    send: (s) => ws.send(s),
    sioEmit: (event, data, ackId) => ws.send(`42${ackId ?? ''}${JSON.stringify([event, data])}`),
    close: () => { try { ws.terminate(); } catch { /* ignore */ } },
  };
  r.closedPromise = new Promise((resolve) => {
    ws.on('close', (code, reason) => { r.closed = { code, reason: reason.toString(), at: Date.now() }; resolve(r.closed); });
  });
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? `<binary ${data.length}>` : data.toString();
    r.frames.push({ text, at: Date.now() });
    if (text === '2' && r.autoPong) ws.send('3');
  });
  ws.on('error', () => { /* surfaced through close */ });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('raw websocket did not open')), timeoutMs);
    ws.once('open', () => { clearTimeout(timer); resolve(); });
    ws.once('unexpected-response', (_req, res) => { clearTimeout(timer); reject(new Error(`upgrade refused: ${res.statusCode}`)); });
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
  r.waitFrame = (pred, ms = 3000, from = 0) => new Promise((resolve, reject) => {
    const t0 = Date.now();
    const iv = setInterval(() => {
      const f = r.frames.slice(from).find((x) => pred(x.text));
      if (f) { clearInterval(iv); resolve(f); return; }
      if (Date.now() - t0 > ms) {
        clearInterval(iv);
        reject(new Error(`no matching frame within ${ms} ms; frames: ${r.frames.map((x) => x.text.slice(0, 120)).join(' | ')}`));
      }
    }, 5);
  });
  r.waitClose = (ms = 3000) => Promise.race([r.closedPromise, sleep(ms).then(() => null)]);
  return r;
}

// ---------------------------------------------------------------- shapes

import assertStrict from 'node:assert/strict';

/** Placeholder in shape(): the key must be present, any value. */
export const ANY = Symbol('any');
const extraFields = new Map();

/**
 * Assert that `obj` has every key of `expected` (values compared with deepStrictEqual unless ANY).
 * Keys the contract does not list are tolerated (additive JSON fields) but recorded, and
 * printed by reportExtraFields() so that they appear in the report.
 */
export function shape(obj, expected, what) {
  assertStrict.ok(obj !== null && typeof obj === 'object', `${what}: expected an object, got ${JSON.stringify(obj)}`);
  for (const [k, v] of Object.entries(expected)) {
    assertStrict.ok(k in obj, `${what}: missing "${k}" in ${JSON.stringify(obj).slice(0, 300)}`);
    if (v !== ANY) assertStrict.deepEqual(obj[k], v, `${what}.${k}`);
  }
  const extra = Object.keys(obj).filter((k) => !(k in expected));
  if (extra.length) {
    if (!extraFields.has(what)) extraFields.set(what, new Set());
    for (const k of extra) extraFields.get(what).add(k);
  }
}

/** shape() with every value ANY. */
export function hasKeys(obj, keys, what) {
  shape(obj, Object.fromEntries(keys.map((k) => [k, ANY])), what);
}

export function reportExtraFields() {
  for (const [what, keys] of extraFields) {
    console.log(`note: fields not in the contract (tolerated): ${what}: ${[...keys].join(', ')}`);
  }
}
