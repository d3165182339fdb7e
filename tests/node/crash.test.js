// Crash loop: stream records with acks over several connections while parleyd is killed
// with SIGKILL at random moments and restarted on the same data dir. After each restart:
// every acknowledged record is stored exactly once, no message is half-stored, the
// aggregates equal a --rebuild of the events, and the daemon serves at once.
// PARLEY_CRASH_KILLS sets the number of kills (default 20).
'use strict';
const {execFileSync} = require('child_process');
const fs = require('fs');
const path = require('path');
const L = require('./lib');
const {test, assert, eq} = L;

const KILLS = +(process.env.PARLEY_CRASH_KILLS || 20);
const CONNS = 4;
const PER_MSG = 40;
const WINDOW = 4;
const NOW = Math.floor(Date.now() / 1000);
const INSTS = ['Crash Institute', 'Kill Nine Forum', 'Restart Council', 'Fsync Foundation',
  'Durable Dialogue Center', 'Atomic Affairs Institute', 'Page Cache Society'];

// Message k holds records k*PER_MSG .. k*PER_MSG+PER_MSG-1, all with ids; its chunk is "m<k>".
function buildMessage(k) {
  const entries = [];
  for (let i = 0; i < PER_MSG; i++) {
    const n = k * PER_MSG + i;
    entries.push(L.entry(L.eventTime(NOW), {
      institution: INSTS[n % INSTS.length], id: 'r' + n, msg: k,
      date: `2024-0${1 + (n % 6)}-${String(1 + (n % 28)).padStart(2, '0')}`,
      counterparts: [INSTS[(n * 3 + 1) % INSTS.length]], kind: ['visit', 'dialogue'][n % 2],
      topics: ['crash', 'topic ' + (n % 5)], participants: n % 50,
    }));
  }
  return L.packedForward('crash', entries, {chunk: 'm' + k, size: PER_MSG});
}

// Streams messages from a shared queue over CONNS connections until stopped; records acks.
class Driver {
  constructor() {
    this.next = 0;
    this.acked = new Set();
    this.unacked = new Set(); // sent at least once, no ack yet: resent after a restart
    this.running = false;
  }

  async run(port, ms) {
    this.running = true;
    const until = Date.now() + ms;
    const work = [];
    for (let c = 0; c < CONNS; c++) work.push(this.conn(port, until));
    await Promise.all(work);
  }

  async conn(port, until) {
    let cl;
    try { cl = await L.RawClient.connect(port); } catch (e) { return; }
    const inflight = new Map();
    // A message is claimed by one connection while in flight there; unacked ones are
    // resent (same chunk id) by whichever connection takes them next.
    const take = () => {
      for (const k of this.unacked) if (!this.claimed.has(k)) { this.claimed.add(k); return k; }
      if (this.drain) return undefined; // only resends now
      const k = this.next++;
      this.claimed.add(k);
      return k;
    };
    try {
      while (this.running && Date.now() < until && !cl.ended) {
        while (inflight.size < WINDOW) {
          const k = take();
          if (k === undefined) break;
          this.unacked.add(k);
          inflight.set('m' + k, k);
          cl.send(buildMessage(k));
        }
        if (inflight.size === 0) break;
        const a = await cl.nextMessage(2000).catch(() => null);
        if (!a) break;
        const k = inflight.get(a.ack);
        if (k === undefined) throw new Error('ack for a chunk not in flight: ' + a.ack);
        inflight.delete(a.ack);
        this.unacked.delete(k);
        this.claimed.delete(k);
        this.acked.add(k);
      }
    } finally {
      for (const k of inflight.values()) this.claimed.delete(k);
      cl.destroy();
    }
  }
}

// Every stored event, by paging the events op.
async function allEvents(d) {
  const rows = [];
  let after;
  for (;;) {
    const r = await d.q('events', Object.assign({limit: 10000}, after ? {after} : {}));
    rows.push(...r.rows);
    if (!r.next) return rows;
    after = r.next;
  }
}

function dump(dir, table) {
  const text = execFileSync('mdb_dump', ['-s', table, dir], {maxBuffer: 1 << 28}).toString();
  // key and value lines, without mdb_dump's header (it names the environment's reader count)
  const lines = text.slice(text.indexOf('HEADER=END') + 11, text.indexOf('DATA=END')).split('\n');
  const rows = [];
  for (let i = 0; i + 1 < lines.length; i += 2) rows.push([lines[i].trim(), lines[i + 1].trim()]);
  return rows;
}

// The derived tables and meta (the state's totals). Month rollups of months marked stale
// lag their day rows by design (they are folded in the background, and recomputed from the
// days after a crash), so those months are compared through their day rows only.
function dumpDerived(dir, staleMonths) {
  const out = [];
  for (const t of ['days', 'pairs', 'insts', 'meta', 'months', 'pair_months']) {
    let rows = dump(dir, t);
    if (t === 'months' || t === 'pair_months') rows = rows.filter(([k]) => !staleMonths.has(k.slice(0, 8)));
    out.push(rows.map((r) => r.join(' ')).join('\n'));
  }
  return out;
}

test(`crash loop: ${KILLS} SIGKILLs under load with acks`, async () => {
  const d = await L.Daemon.start({args: ['--sync', 'full']});
  const dataDir = path.join(d.dir, 'data');
  const drv = new Driver();
  drv.claimed = new Set();
  try {
    for (let round = 1; round <= KILLS; round++) {
      const killAfter = 150 + Math.floor(Math.random() * 350);
      const load = drv.run(d.ingestPort, 60000);
      await L.sleep(killAfter * L.SLOW);
      await d.stop('SIGKILL');
      drv.running = false;
      await load;

      // aggregates on disk equal a rebuild of the events (on a copy: the original must
      // serve as it is, without repair)
      const copy = path.join(d.dir, 'copy');
      fs.rmSync(copy, {recursive: true, force: true});
      fs.mkdirSync(copy);
      execFileSync('mdb_copy', [dataDir, copy]);
      const stale = new Set(dump(copy, 'stale').map(([k]) => k));
      const before = dumpDerived(copy, stale);
      execFileSync(path.join(L.BUILD, 'parleyd'), ['--data-dir', copy, '--rebuild', '--log-level', 'warn']);
      eq(dump(copy, 'stale').length, 0, 'no month is stale after a rebuild');
      const after = dumpDerived(copy, stale);
      for (let i = 0; i < before.length; i++) {
        if (before[i] !== after[i]) throw new Error(`round ${round}: table ${i} differs from a rebuild`);
      }

      await d.spawn(); // same data dir, new ports
      const rows = await allEvents(d);
      const ids = new Map();
      const perMsg = new Map();
      for (const r of rows) {
        ids.set(r.id, (ids.get(r.id) || 0) + 1);
        perMsg.set(r.msg, (perMsg.get(r.msg) || 0) + 1);
      }
      for (const [id, n] of ids) if (n !== 1) throw new Error(`round ${round}: ${id} stored ${n} times`);
      for (const k of drv.acked) {
        if (perMsg.get(k) !== PER_MSG) throw new Error(`round ${round}: acked message ${k} has ${perMsg.get(k) || 0} records`);
      }
      for (const [k, n] of perMsg) {
        if (n !== PER_MSG) throw new Error(`round ${round}: message ${k} is half-stored (${n}/${PER_MSG})`);
      }
      const st = await d.q('stats');
      eq(st.events, rows.length, `round ${round}: stats.events`);
    }
    assert(drv.acked.size > KILLS, 'the load made progress: ' + drv.acked.size + ' messages acked');
    // every message sent is eventually acked once resent after the restarts
    drv.drain = true;
    for (let tries = 0; drv.unacked.size && tries < 20; tries++) await drv.run(d.ingestPort, 5000);
    eq(drv.unacked.size, 0, 'messages still unacked after resending');
    const rows = await allEvents(d);
    eq(rows.length, drv.acked.size * PER_MSG, 'every acked record, once');
    console.log(`# ${KILLS} kills, ${drv.acked.size} messages (${rows.length} records) acked and stored once`);
  } finally {
    await d.stop();
    d.cleanup();
  }
});

test('SIGTERM during heavy ingest: acked messages are stored, exit 0 within seconds', async () => {
  const d = await L.Daemon.start({args: ['--sync', 'full']});
  const drv = new Driver();
  drv.claimed = new Set();
  try {
    const load = drv.run(d.ingestPort, 60000);
    await L.sleep(800 * L.SLOW);
    const t0 = Date.now();
    const {code} = await d.stop('SIGTERM');
    const secs = (Date.now() - t0) / 1000;
    drv.running = false;
    await load;
    eq(code, 0, 'exit status');
    assert(secs < 5 * L.SLOW, `stopped in ${secs} s`);
    assert(/writer stopped; every acknowledged record is committed/.test(d.log), 'drained');
    await d.spawn();
    const rows = await allEvents(d);
    const perMsg = new Map();
    for (const r of rows) perMsg.set(r.msg, (perMsg.get(r.msg) || 0) + 1);
    for (const k of drv.acked) eq(perMsg.get(k), PER_MSG, 'acked message ' + k);
    for (const [k, n] of perMsg) eq(n, PER_MSG, 'message ' + k + ' whole');
    assert(drv.acked.size > 0, 'messages were acked before the stop');
  } finally {
    await d.stop();
    d.cleanup();
  }
});

L.run();
