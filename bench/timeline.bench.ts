/**
 * Timeline benchmark: first render of the timeline in Chromium with 100 records and with 100,000
 * (goal: the 100k render costs at most 2× the 100 one, which a virtualized list with paged reads
 * should meet), plus frame times while scrolling through the 100k list.
 *
 * The records sit in a real AuditStore (SQLite) behind the headless web host, so a render includes
 * the page read and count over the contract, as in the app. "First render" is measured inside the page:
 * from the click on the Timeline tab to the newest record's row on screen.
 *
 * Run alone: `node bench/timeline.bench.ts` (prints JSON). Uses dist/renderer when built, otherwise
 * builds the renderer into a temporary directory.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditStore } from '../main/core/audit/store.ts';
import { startWebServer } from '../main/headless/web-server.ts';
import { goal, plain, ratioOf, type Figures } from './figures.ts';
import { backWithStore, buildRenderer, createFixtureApp, launchBrowser, memorySecrets, REPO_ROOT, sampleToolCall } from '../test/helpers/ui.ts';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface TimelineBenchResult {
  timeline_render_100: Percentiles;
  timeline_render_100k: Percentiles;
  /** Frame intervals while scrolling the 100k list from top to bottom in steps. */
  timeline_scroll_frame_100k: Percentiles;
}

// Globals of the page the functions passed to page.evaluate run in (the root project has no DOM lib).
declare const document: {
  getElementById(id: string): { click(): void; scrollTop: number; scrollHeight: number } | null;
  querySelector(s: string): { textContent: string | null; scrollTop: number; scrollHeight: number; clientHeight: number } | null;
};
declare function requestAnimationFrame(cb: (t: number) => void): number;
declare const performance: { now(): number };

const RUNS = Number(process.env.TIMELINE_BENCH_RUNS ?? 40);

function percentiles(samples: number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => Number(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!.toFixed(2));
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

async function measure(count: number, renderer: string): Promise<{ render: number[]; frames: number[] }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'countersign-bench-timeline-'));
  const store = await AuditStore.open({ dataDir, secrets: memorySecrets() });
  const app = createFixtureApp({ demo: false });
  const unback = backWithStore(app, store);
  const server = await startWebServer({ handlers: app.handlers, events: app.events, staticDir: renderer });
  const browser = await launchBrowser();
  try {
    for (let i = 0; i < count; i += 10_000) {
      store.appendMany(Array.from({ length: Math.min(10_000, count - i) }, (_, j) => sampleToolCall(i + j + 1)));
    }
    const page = await browser.context.newPage();
    await page.goto(server.url);
    await page.getByRole('tab', { name: 'Status' }).waitFor();
    const render: number[] = [];
    for (let run = 0; run < RUNS + 3; run++) {
      const ms = await page.evaluate(
        () =>
          new Promise<number>((resolve) => {
            const t0 = performance.now();
            document.getElementById('tab-timeline')!.click();
            const check = () => {
              const cell = document.querySelector('#row-0 span');
              if (cell?.textContent) resolve(performance.now() - t0);
              else requestAnimationFrame(check);
            };
            requestAnimationFrame(check);
          }),
      );
      if (run >= 3) render.push(ms);
      await page.evaluate(() => document.getElementById('tab-status')!.click());
      await page.getByRole('heading', { name: 'Status' }).waitFor();
    }
    await page.getByRole('tab', { name: 'Timeline' }).click();
    await page.locator('#row-0 span').first().waitFor();
    const frames = await page.evaluate(
      () =>
        new Promise<number[]>((resolve) => {
          const list = document.querySelector('[role="listbox"]')!;
          const out: number[] = [];
          let last = performance.now();
          let step = 0;
          const steps = 120;
          const tick = (t: number) => {
            out.push(t - last);
            last = t;
            list.scrollTop = ((list.scrollHeight - list.clientHeight) * ++step) / steps;
            if (step < steps) requestAnimationFrame(tick);
            else resolve(out.slice(1));
          };
          requestAnimationFrame(tick);
        }),
    );
    await page.close();
    return { render, frames };
  } finally {
    await browser.close();
    await server.close();
    unback();
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export async function benchTimeline(): Promise<TimelineBenchResult> {
  const built = join(REPO_ROOT, 'dist', 'renderer');
  const temp = existsSync(join(built, 'index.html')) ? null : await buildRenderer();
  try {
    const dir = temp?.dir ?? built;
    const small = await measure(100, dir);
    const large = await measure(100_000, dir);
    return {
      timeline_render_100: percentiles(small.render),
      timeline_render_100k: percentiles(large.render),
      timeline_scroll_frame_100k: percentiles(large.frames),
    };
  } finally {
    await temp?.dispose();
  }
}

/** The timeline's figures for bench/run.ts. */
export async function bench(): Promise<Figures> {
  const r = await benchTimeline();
  return {
    timeline_render_100: plain(r.timeline_render_100, 'ms', 'in Chromium, from the click on the Timeline tab to the newest row on screen, 100 records in the store (baseline)'),
    timeline_render_100k: plain(r.timeline_render_100k, 'ms', 'the same with 100,000 records'),
    timeline_render_100k_vs_100: goal(ratioOf(r.timeline_render_100k.p50, r.timeline_render_100.p50), 'ratio', '<=', 2, 'first render with 100,000 records over 100 (p50)'),
    timeline_scroll_frame_100k: plain(r.timeline_scroll_frame_100k, 'ms', 'frame intervals while scrolling the 100,000-record list top to bottom (a detail)'),
  };
}

if (import.meta.filename === process.argv[1]) {
  const result = await benchTimeline();
  console.log(JSON.stringify({ ...result, ratio_p50: result.timeline_render_100k.p50 / result.timeline_render_100.p50 }, null, 2));
}
