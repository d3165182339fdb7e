// The dashboard end to end in headless Chromium: the page served at / runs its inline
// script against the real parleyd, and the DOM it leaves (chromium --dump-dom) is checked
// for totals, the top-institutions bars, the weekly line chart's paths, topics, formats and
// the pair view, on an empty store and on the sample data. Also takes a screenshot.
'use strict';
const {spawn} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const L = require('./lib');
const {test, assert, eq} = L;

const NQ = 'National Committee on U.S.-China Relations';
const CHROMIUM = ['chromium', 'chromium-browser', 'google-chrome'].find((c) =>
  process.env.PATH.split(':').some((d) => fs.existsSync(path.join(d, c))));

if (!CHROMIUM) {
  console.log('not ok - chromium is not installed (Debian package chromium: make deps-test)');
  process.exit(1);
}

// Runs headless Chromium on url with extra flags; resolves with its stdout.
function chromium(url, extra) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-chromium-'));
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--virtual-time-budget=10000',
    '--window-size=1280,900', ...extra, url];
  return new Promise((resolve, reject) => {
    const p = spawn(CHROMIUM, args, {stdio: ['ignore', 'pipe', 'pipe']});
    let out = '', err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 90000 * L.SLOW);
    p.stdout.on('data', (b) => { out += b; });
    p.stderr.on('data', (b) => { err += b; });
    p.on('exit', (code) => {
      clearTimeout(timer);
      fs.rmSync(profile, {recursive: true, force: true});
      if (code !== 0) reject(new Error(`chromium exited ${code}: ${err.slice(-800)}`));
      else resolve(out);
    });
  });
}

// The rendered DOM of the dashboard at /?query.
async function dom(d, query = '') {
  const page = await chromium(`http://127.0.0.1:${d.httpPort}/${query}`, ['--dump-dom']);
  // What is shown: the document without its own script and style text.
  const html = page.replace(/<script>[\s\S]*?<\/script>/g, '')
    .replace(/<style>[\s\S]*?<\/style>/g, '');
  const status = (/id="status"[^>]*>([^<]*)/.exec(html) || [])[1];
  assert(/<body[^>]*data-state="ready"/.test(html), 'the page loaded without errors: ' + status);
  const failed = (/cannot load:[^<]*/.exec(html) || [])[0];
  assert(!failed, 'no section failed: ' + failed);
  return html;
}

const unescape = (s) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"')
  .replace(/&#39;/g, "'").replace(/&nbsp;/g, '\u00a0').replace(/&amp;/g, '&');

function byId(html, id) {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html);
  if (!m) throw new Error(`#${id} not in the page`);
  return unescape(m[1]);
}

// The <svg data-chart=name> element's markup.
function chart(html, name) {
  const m = new RegExp(`<svg[^>]*data-chart="${name}"[\\s\\S]*?</svg>`).exec(html);
  if (!m) throw new Error(`chart ${name} not drawn`);
  return m[0];
}

// [label, value] of each bar, top to bottom.
function bars(svg) {
  return [...svg.matchAll(/<rect[^>]*class="bar"[^>]*>/g)].map(([r]) =>
    [unescape(/data-label="([^"]*)"/.exec(r)[1]), +/data-value="([^"]*)"/.exec(r)[1]]);
}

function barLabels(svg) {
  return [...svg.matchAll(/<text[^>]*class="bar-label"[^>]*>([^<]*)/g)].map((m) => unescape(m[1]));
}

// {institution: [[x, y], ...]} of the weekly chart's lines.
function paths(svg) {
  const out = {};
  for (const [p] of svg.matchAll(/<path[^>]*>/g)) {
    const d = /\sd="([^"]*)"/.exec(p)[1];
    const who = unescape(/data-institution="([^"]*)"/.exec(p)[1]);
    assert(/^M[\d.]+ [\d.]+( L[\d.]+ [\d.]+)*$/.test(d),
      `path of ${who} is a polyline: ${d.slice(0, 60)}`);
    out[who] = d.slice(1).split(' L').map((pt) => pt.split(' ').map(Number));
  }
  return out;
}

function axisTexts(svg) {
  const g = /<g class="axis">([\s\S]*?)<\/g>/.exec(svg);
  return [...g[1].matchAll(/<text[^>]*>([^<]*)</g)].map((m) => unescape(m[1]));
}

test('an empty store: zeros and empty charts, no errors', async ({daemon}) => {
  const html = await dom(daemon);
  eq(byId(html, 'total-events'), '0', 'events');
  eq(byId(html, 'total-institutions'), '0', 'institutions');
  eq(byId(html, 'total-range'), 'no events yet', 'range');
  assert(/id="top-chart"><div class="empty">No events in this window</.test(html), 'top empty');
  assert(/id="weekly-chart"><div class="empty">No events in this window</.test(html), 'weekly');
  assert(/id="formats-chart"><div class="empty">/.test(html), 'formats empty');
  assert(/id="pair-body"><div class="empty">No institutions yet</.test(html), 'pair empty');
});

test('the sample data is loaded', async ({daemon}) => {
  const send = path.join(L.BUILD, 'parley');
  if (fs.existsSync(send)) {
    const file = path.resolve(__dirname, '../data/track2-sample.jsonl');
    const out = await new Promise((resolve, reject) => {
      const p = spawn(send, ['send', '--addr', `127.0.0.1:${daemon.ingestPort}`, file]);
      let text = '';
      p.stdout.on('data', (b) => { text += b; });
      p.stderr.on('data', (b) => { text += b; });
      p.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(text))));
    });
    assert(/acked 10/.test(out), 'parley send: ' + out.trim());
  } else {
    await L.loadSample(daemon);
  }
  eq((await daemon.q('stats')).events, 10, 'stored');
});

test('totals, top bars, weekly lines, topics, formats, pair (365 days)', async ({daemon}) => {
  const html = await dom(daemon);
  eq(byId(html, 'total-events'), '10', 'events');
  eq(byId(html, 'total-institutions'), '10', 'institutions');
  eq(byId(html, 'total-range'), '2009-10-11 – 2023-11-13', 'date range');
  eq(byId(html, 'total-rejected'), '0', 'rejected');
  eq(byId(html, 'total-duplicates'), '0', 'duplicates');

  const top = chart(html, 'top');
  const five = ['Center for China and Globalization',
    'National Academy of Development and Strategy', NQ,
    'National Institute for South China Sea Studies',
    'Quincy Institute for Responsible Statecraft'];
  eq(bars(top), five.map((n, i) => [n, i < 3 ? 2 : 1]), 'top bars (value desc, then name)');
  eq(barLabels(top), five, 'top bar labels');
  assert(axisTexts(top).includes('events in the window'), 'top axis title');
  eq(byId(html, 'top-hint'), 'last 365 days: 2022-11-14 – 2023-11-13 · by events', 'top window');

  const weekly = chart(html, 'weekly');
  const lines = paths(weekly);
  eq(Object.keys(lines), five, 'one line per top-5 institution, in rank order');
  for (const [who, pts] of Object.entries(lines)) {
    eq(pts.length, 53, who + ': one point per ISO week 2022-W46..2023-W46');
    for (let i = 1; i < pts.length; i++) assert(pts[i][0] > pts[i - 1][0], who + ': x increases');
  }
  // NCUSCR reported in 2022-W51 and 2023-W07: two peaks at the top of a 0..1 axis.
  const ys = lines[NQ].map((p) => p[1]);
  const base = Math.max(...ys), peak = Math.min(...ys);
  eq(ys.filter((y) => y === peak).length, 2, 'NCUSCR peaks');
  eq(ys.indexOf(peak), 5, 'first NCUSCR peak in 2022-W51 (6th week)');
  eq(ys.filter((y) => y === base).length, 51, 'zero elsewhere');
  const ax = axisTexts(weekly);
  for (const t of ['0', '1', '2022-W46', '2023-W46', 'ISO week', 'events'])
    assert(ax.includes(t), `weekly axis shows ${t}: ${ax.join('|')}`);
  eq(byId(html, 'weekly-hint'), '2022-11-14 – 2023-11-13 · 53 weeks · by events in the window',
    'weeks');
  assert(html.includes('class="legend-item"'), 'legend');

  const topics = bars(chart(html, 'topics'));
  eq(topics.length, 8, 'eight topics');
  assert(topics.some(([t, n]) => t === 'bilateral relations' && n === 2), 'bilateral relations 2');
  eq(bars(chart(html, 'formats')), [['in_person', 5], ['virtual', 3], ['hybrid', 0]], 'formats');

  const pair = /<div id="pair-body" data-a="([^"]*)" data-b="([^"]*)"/.exec(html);
  eq(pair && [unescape(pair[1]), unescape(pair[2])], [NQ, 'China-U.S. Green Fund'],
    'the pair defaults to the busiest institution and its main counterpart');
  eq(byId(html, 'pair-events'), '3', 'pair events (NCUSCR and the Green Fund)');
  eq(byId(html, 'pair-first'), '2019-03-01', 'pair first');
  eq(byId(html, 'pair-last'), '2023-02-14', 'pair last');
  eq(byId(html, 'pair-active'), '3', 'years active');
  eq(byId(html, 'pair-current'), '2 years', 'current streak (2022, 2023)');
  eq(byId(html, 'pair-longest'), '2 years', 'longest streak');
  eq(byId(html, 'pair-kinds'), 'dialogue 3', 'kinds');
});

test('a ten-year window and a chosen pair by month, from the address', async ({daemon}) => {
  const html = await dom(daemon,
    '?window=3650&a=Center+for+China+and+Globalization&b=ChinaWest+Dialogue&period=month');
  eq(byId(html, 'top-hint'), 'last 3,650 days: 2013-11-16 – 2023-11-13 · by events', 'window');
  eq(bars(chart(html, 'formats')), [['in_person', 6], ['virtual', 3], ['hybrid', 0]], 'formats');
  const lines = paths(chart(html, 'weekly'));
  eq(Object.keys(lines).length, 5, 'five lines');
  const weeks = Object.values(lines)[0].length;
  assert(weeks >= 521 && weeks <= 523, 'ten years of ISO weeks: ' + weeks);
  eq(byId(html, 'pair-events'), '1', 'pair events');
  eq(byId(html, 'pair-first'), '2023-07-28', 'first');
  eq(byId(html, 'pair-active'), '1', 'months active');
  eq(byId(html, 'pair-current'), '0 months', 'no current streak in 2023-11');
  eq(byId(html, 'pair-longest'), '1 month', 'longest streak');
});

test('a screenshot at 1280x900', async ({daemon}) => {
  const out = process.env.PARLEY_DASHBOARD_PNG ||
    path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'parley-shot-')), 'dashboard.png');
  await chromium(`http://127.0.0.1:${daemon.httpPort}/`, [`--screenshot=${out}`]);
  const png = fs.readFileSync(out);
  eq(png.subarray(1, 4).toString(), 'PNG', 'a PNG file');
  eq([png.readUInt32BE(16), png.readUInt32BE(20)], [1280, 900], 'its size');
  assert(png.length > 20000, 'not blank: ' + png.length + ' bytes');
  console.log('# screenshot: ' + out);
  if (!process.env.PARLEY_DASHBOARD_PNG)
    fs.rmSync(path.dirname(out), {recursive: true, force: true});
});

test('the daemon stops cleanly', async ({daemon}) => {
  await L.stopClean(daemon);
});

L.run(async () => {
  const daemon = await L.Daemon.start();
  return {
    daemon,
    cleanup: async () => {
      await daemon.stop();
      daemon.cleanup();
    },
  };
});
