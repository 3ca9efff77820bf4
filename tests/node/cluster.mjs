// Cluster mode of the Node suites (COURSECHAT_CLUSTER_NODES=N): the shared backends of the nodes.
//
// Every cluster started by helpers.mjs gets its own Redis key prefix and its own MongoDB database;
// this module names them, keeps them with the cluster's data dir (so a restart on that dir joins
// the same cluster again) and removes them afterwards: the Redis keys under the prefix (with
// redis-cli) and the MongoDB database (dropDatabase over the wire protocol, so the suite needs no
// MongoDB driver; with credentials or mongodb+srv it uses the `mongodb` package if installed).
//
// Also a small CLI, used by helpers.mjs at process exit (when it can no longer await):
//   node cluster.mjs cleanup REDIS_URL PREFIX MONGODB_URL

import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const CLEANUP_SCRIPT = fileURLToPath(import.meta.url);

/** Number of nodes per started server: 0 = single-node mode (the default). */
export function clusterNodes() {
  const raw = (process.env.COURSECHAT_CLUSTER_NODES ?? '').trim();
  if (raw === '' || raw === '0') return 0;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 16) {
    throw new Error(`COURSECHAT_CLUSTER_NODES must be an integer 1..16 (or unset for one in-process node), got "${raw}"`);
  }
  return n;
}

export const testRedisUrl = () => process.env.CHAT_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

export function testMongoUrl() {
  const url = process.env.CHAT_TEST_MONGODB_URL;
  if (!url) {
    throw new Error('cluster mode (COURSECHAT_CLUSTER_NODES) needs CHAT_TEST_MONGODB_URL, e.g. from `scripts/mongodb-for-tests start`');
  }
  return url;
}

/** The MongoDB URL `base` with its database (the path before `?`) replaced by `db`. */
export function withDatabase(base, db) {
  const q = base.indexOf('?');
  const head = q < 0 ? base : base.slice(0, q);
  const query = q < 0 ? null : base.slice(q + 1);
  const schemeEnd = head.indexOf('://') < 0 ? 0 : head.indexOf('://') + 3;
  const slash = head.indexOf('/', schemeEnd);
  const hosts = slash < 0 ? head : head.slice(0, slash);
  return `${hosts}/${db}${query !== null ? `?${query}` : ''}`;
}

/**
 * The cluster identity kept in `dataDir/cluster.json`: {tag, prefix, db}. Made on first use, read
 * back when a cluster is started again on the same data dir (a restart joins the same Redis prefix
 * and MongoDB database, as a redeployed cluster would).
 */
export function clusterIdentity(dataDir) {
  const file = path.join(dataDir, 'cluster.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const tag = randomBytes(6).toString('hex');
  const ident = { tag, prefix: `ccnode-${tag}:`, db: `ccnode_${tag}` };
  writeFileSync(file, JSON.stringify(ident));
  return ident;
}

export function readClusterIdentity(dataDir) {
  const file = path.join(dataDir, 'cluster.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
}

// ---------------------------------------------------------------- Redis

function redisCliArgs(url) {
  return ['-u', url];
}

function execFileP(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 256 * 1024 * 1024, timeout: 30000, ...opts }, (err, stdout, stderr) => {
      if (err) { err.stderr = stderr; reject(err); } else resolve(stdout);
    });
  });
}

/** Deletes every key under `prefix` (SCAN, then DEL in batches). Resolves to the number deleted. */
export async function deleteRedisPrefix(url, prefix) {
  if (!/^[A-Za-z0-9_:.-]+$/.test(prefix)) throw new Error(`refusing to delete keys under an unusual prefix "${prefix}"`);
  const out = await execFileP('redis-cli', [...redisCliArgs(url), '--scan', '--pattern', `${prefix}*`]);
  const keys = [...new Set(out.split('\n').filter((k) => k.length > 0 && k.startsWith(prefix)))];
  for (let i = 0; i < keys.length; i += 500) {
    await execFileP('redis-cli', [...redisCliArgs(url), 'DEL', ...keys.slice(i, i + 500)]);
  }
  return keys.length;
}

export function deleteRedisPrefixSync(url, prefix) {
  if (!/^[A-Za-z0-9_:.-]+$/.test(prefix)) return;
  const r = spawnSync('redis-cli', [...redisCliArgs(url), '--scan', '--pattern', `${prefix}*`], { encoding: 'utf8', timeout: 20000, maxBuffer: 256 * 1024 * 1024 });
  const keys = (r.stdout ?? '').split('\n').filter((k) => k.length > 0 && k.startsWith(prefix));
  for (let i = 0; i < keys.length; i += 500) {
    spawnSync('redis-cli', [...redisCliArgs(url), 'DEL', ...keys.slice(i, i + 500)], { timeout: 20000 });
  }
}

/** True when the Redis answers PING. */
export function redisAnswers(url) {
  const r = spawnSync('redis-cli', [...redisCliArgs(url), 'PING'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 && /PONG/.test(r.stdout ?? '');
}

// ---------------------------------------------------------------- MongoDB (dropDatabase)

function bsonCString(s) { return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]); }

function bsonDoc(fields) {
  const parts = [];
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'number') {
      const b = Buffer.alloc(4); b.writeInt32LE(v);
      parts.push(Buffer.from([0x10]), bsonCString(k), b);
    } else {
      const s = Buffer.from(String(v), 'utf8');
      const len = Buffer.alloc(4); len.writeInt32LE(s.length + 1);
      parts.push(Buffer.from([0x02]), bsonCString(k), len, s, Buffer.from([0]));
    }
  }
  const body = Buffer.concat(parts);
  const size = Buffer.alloc(4); size.writeInt32LE(4 + body.length + 1);
  return Buffer.concat([size, body, Buffer.from([0])]);
}

/** Top-level scalar fields of a BSON document (enough to read {ok, errmsg, code}). */
function bsonTopLevel(buf) {
  const out = {};
  let i = 4;
  const end = buf.readInt32LE(0) - 1;
  while (i < end) {
    const type = buf[i]; i += 1;
    const z = buf.indexOf(0, i);
    const key = buf.toString('utf8', i, z); i = z + 1;
    switch (type) {
      case 0x01: out[key] = buf.readDoubleLE(i); i += 8; break;
      case 0x02: { const n = buf.readInt32LE(i); out[key] = buf.toString('utf8', i + 4, i + 4 + n - 1); i += 4 + n; break; }
      case 0x03: case 0x04: i += buf.readInt32LE(i); break;
      case 0x05: i += 4 + 1 + buf.readInt32LE(i); break;
      case 0x07: i += 12; break;
      case 0x08: out[key] = buf[i] !== 0; i += 1; break;
      case 0x09: case 0x11: case 0x12: out[key] = type === 0x12 ? Number(buf.readBigInt64LE(i)) : null; i += 8; break;
      case 0x0a: out[key] = null; break;
      case 0x10: out[key] = buf.readInt32LE(i); i += 4; break;
      default: return out; // a type we do not need: stop here
    }
  }
  return out;
}

/** One OP_MSG command to host:port; resolves to the reply's top-level fields. */
function mongoCommand(host, port, doc, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const body = bsonDoc(doc);
    const header = Buffer.alloc(16 + 4 + 1);
    header.writeInt32LE(16 + 4 + 1 + body.length, 0);
    header.writeInt32LE(randomBytes(3).readUIntLE(0, 3), 4);
    header.writeInt32LE(0, 8);
    header.writeInt32LE(2013, 12); // OP_MSG
    header.writeUInt32LE(0, 16); // flagBits
    header[20] = 0; // section kind 0: the body
    const sock = net.connect({ host, port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`MongoDB ${host}:${port} did not answer within ${timeoutMs} ms`)); }, timeoutMs);
    sock.on('connect', () => sock.write(Buffer.concat([header, body])));
    sock.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= 4 && data.length >= data.readInt32LE(0)) {
        clearTimeout(timer);
        sock.destroy();
        try {
          if (data.readInt32LE(12) !== 2013 || data[20] !== 0) throw new Error('unexpected MongoDB reply');
          resolve(bsonTopLevel(data.subarray(21)));
        } catch (e) { reject(e); }
      }
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** Drops the database named in `url` (its path). */
export async function dropMongoDatabase(url) {
  const m = url.match(/^mongodb:\/\/([^/?]*)\/([^?]*)/);
  const db = m?.[2] ?? '';
  if (!m || m[1].includes('@') || /[?&](tls|ssl)=true/i.test(url)) {
    // credentials, TLS or mongodb+srv: only with the official driver, if present
    let mongodb;
    try { mongodb = await import('mongodb'); } catch { throw new Error('dropping this database needs the `mongodb` package (URL has credentials, TLS or srv)'); }
    const client = new mongodb.MongoClient(url, { serverSelectionTimeoutMS: 5000 });
    try { await client.db().dropDatabase(); } finally { await client.close().catch(() => {}); }
    return;
  }
  if (!/^ccnode_[0-9a-f]+$/.test(db)) throw new Error(`refusing to drop database "${db}": not one this suite made`);
  let lastError = null;
  for (const hp of m[1].split(',')) {
    const idx = hp.lastIndexOf(':');
    const host = idx > 0 ? hp.slice(0, idx) : hp;
    const port = idx > 0 ? Number(hp.slice(idx + 1)) : 27017;
    try {
      const reply = await mongoCommand(host.replace(/^\[|\]$/g, ''), port, { dropDatabase: 1, $db: db });
      if (reply.ok === 1) return;
      lastError = new Error(`dropDatabase ${db} on ${hp}: ${reply.errmsg ?? JSON.stringify(reply)}`);
    } catch (e) { lastError = e; }
  }
  throw lastError ?? new Error('no MongoDB host in the URL');
}

/** Removes a cluster's Redis keys and MongoDB database; logs (never throws) on failure. */
export async function cleanupCluster({ redisUrl, prefix, mongoUrl }) {
  const problems = [];
  try { await deleteRedisPrefix(redisUrl, prefix); } catch (e) { problems.push(`Redis keys ${prefix}*: ${e.message}`); }
  try { await dropMongoDatabase(mongoUrl); } catch (e) { problems.push(`MongoDB ${mongoUrl}: ${e.message}`); }
  if (problems.length) console.log(`note: cluster cleanup left something behind: ${problems.join('; ')}`);
}

// ---------------------------------------------------------------- CLI (cleanup at process exit)

if (process.argv[1] && path.resolve(process.argv[1]) === CLEANUP_SCRIPT && process.argv[2] === 'cleanup') {
  const [redisUrl, prefix, mongoUrl] = process.argv.slice(3);
  await cleanupCluster({ redisUrl, prefix, mongoUrl });
}

