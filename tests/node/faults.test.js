// Storage faults against the real parleyd: a tiny map that must grow, a hard size limit
// (writes fail cleanly, nothing is acked, queries still answer, ingest resumes with room),
// a full disk (a small tmpfs, when this machine lets us mount one), and a second daemon on
// the same data directory.
'use strict';
const {execFileSync, spawnSync} = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const L = require('./lib');
const {test, assert, eq} = L;

const NOW = Math.floor(Date.now() / 1000);

function frame(k, n = 100, pad = 200) {
  const entries = [];
  for (let i = 0; i < n; i++) {
    entries.push(L.entry(NOW, {institution: 'Fault Institute ' + (i % 7), id: `f${k}-${i}`,
      date: '2024-05-01', title: 'x'.repeat(pad), topics: ['faults']}));
  }
  return L.packedForward('faults', entries, {chunk: 'f' + k});
}

// Sends frames one at a time until one is not acked; returns [acked, firstUnacked].
async function fillUntilFailure(d, max = 2000) {
  for (let k = 0; k < max; k++) {
    const c = await L.RawClient.connect(d.ingestPort);
    c.send(frame(k));
    const a = await c.nextMessage().catch(() => null);
    c.destroy();
    if (!a) return [k, k];
    eq(a, {ack: 'f' + k}, 'ack');
  }
  throw new Error('never failed');
}

async function sendAcked(d, k) {
  const c = await L.RawClient.connect(d.ingestPort);
  c.send(frame(k));
  const a = await c.nextMessage();
  c.destroy();
  eq(a, {ack: 'f' + k}, 'ack for frame ' + k);
}

function healthz(d) {
  return new Promise((resolve) => {
    if (!d.httpPort) return resolve(null);
    http.get({host: '127.0.0.1', port: d.httpPort, path: '/healthz'}, (res) => {
      let body = '';
      res.on('data', (b) => { body += b; });
      res.on('end', () => resolve({status: res.statusCode, body}));
    }).on('error', () => resolve(null));
  });
}

test('a tiny map grows by itself, nothing lost', async () => {
  const d = await L.Daemon.start({args: ['--set', 'storage.map_size=1MiB']});
  try {
    for (let k = 0; k < 60; k++) await sendAcked(d, k);
    eq((await d.q('stats')).events, 6000, 'events');
    assert(/map grown to \d+ MiB/.test(d.log), 'growth logged');
  } finally { await d.stop(); d.cleanup(); }
});

test('a hard size limit: writes fail cleanly, queries answer, resumes with room', async () => {
  const d = await L.Daemon.start({args: ['--set', 'storage.map_size=1MiB',
    '--set', 'storage.map_size_max=2MiB']});
  try {
    const [acked, failed] = await fillUntilFailure(d);
    assert(acked > 0, 'some frames fit');
    // the log line may reach us just after the closed connection does
    await L.waitFor(() => /commit of .* failed: store is at its configured size limit/.test(d.log));
    const st = await d.q('stats');
    eq(st.events, acked * 100, 'exactly the acked records are stored');
    const h = await healthz(d);
    if (h) eq(h.status, 503, 'healthz says unavailable');
    // a restart with more room: the unacked frame is resent and acked, stored once
    const {code} = await d.stop();
    eq(code, 0, 'clean stop while full');
    d.args.push('--set', 'storage.map_size_max=64MiB');
    await d.spawn();
    await sendAcked(d, failed);
    await sendAcked(d, failed); // a client retry: acked, not stored again
    eq((await d.q('stats')).events, (acked + 1) * 100, 'events after room returned');
    const h2 = await healthz(d);
    if (h2) eq(h2.status, 200, 'healthz ok again');
  } finally { await d.stop(); d.cleanup(); }
});

test('a full disk: writes fail cleanly, ingest resumes when room returns', async () => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-tmpfs-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
  if (m.status !== 0) {
    fs.rmdirSync(mnt);
    console.log('# SKIP: cannot mount a tmpfs here (needs root); disk-full test skipped');
    return;
  }
  let d;
  try {
    const filler = path.join(mnt, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(3 * 1024 * 1024));
    d = await L.Daemon.start({dir: mnt, args: ['--set', 'storage.map_size=64MiB']});
    const [acked] = await fillUntilFailure(d, 5000);
    // LMDB reports a short write to a full disk as EIO, a failed one as ENOSPC
    await L.waitFor(() => /commit of .* failed: (no space left on device|input\/output error)/.test(d.log));
    eq((await d.q('stats')).events, acked * 100, 'queries still answer; acked records stored');
    fs.unlinkSync(filler); // room returns, no restart
    await L.waitFor(async () => {
      const c = await L.RawClient.connect(d.ingestPort);
      c.send(frame(100000));
      const a = await c.nextMessage().catch(() => null);
      c.destroy();
      return a && a.ack === 'f100000';
    }, 10000 * L.SLOW, 200);
    eq((await d.q('stats')).events, (acked + 1) * 100, 'ingest resumed');
    assert(/commits succeed again/.test(d.log), 'recovery logged');
  } finally {
    if (d) await d.stop();
    spawnSync('umount', [mnt]);
    fs.rmSync(mnt, {recursive: true, force: true});
  }
});

test('a second parleyd on the same data directory is refused', async () => {
  const d = await L.Daemon.start();
  try {
    const r = spawnSync(path.join(L.BUILD, 'parleyd'), ['--data-dir', path.join(d.dir, 'data'),
      '--listen', '127.0.0.1:0', '--query-listen', '127.0.0.1:0', '--http-listen', 'none'],
    {timeout: 10000});
    assert(r.status !== 0, 'non-zero exit');
    assert(/in use by another parleyd/.test(r.stderr.toString()), 'clear message: ' + r.stderr);
    eq((await d.q('ping')).pong, true, 'the first daemon still serves');
  } finally { await d.stop(); d.cleanup(); }
});

L.run();
