/**
 * The native approval dialog shows everything that will run, through the real approval service and
 * planner and the Electron test double (test/helpers/electron-double.ts: the Electron binary cannot
 * run here, so what is proven is what the shell hands to dialog.showMessageBox, not how the OS draws it).
 */
import { describe, expect, it } from 'vitest';
import type { ApprovalView } from '../../common/approval-view.ts';
import { ApprovalService } from '../../main/core/approvals/approval-service.ts';
import { approverFor, argsOf } from '../../main/core/approvals/broker-approver.ts';
import { makeVisible, renderArguments } from '../../main/core/approvals/render.ts';
import type { CallPlan } from '../../main/core/connectors/types.ts';
import { PART_CHARS, promptNatively } from '../../main/electron/native-prompter.ts';
import { createElectronDouble } from '../helpers/electron-double.ts';
import { LONG_PARAMS, LONG_SQL, longPlan } from '../core/approvals/long-call.ts';

type Box = { detail: string; buttons: string[]; defaultId: number; cancelId: number };

/** Asks for `plan` through the approval service, the native prompter and the double answering `answers`. */
async function ask(plan: CallPlan, answers: number[], signal = new AbortController().signal) {
  const { electron, recorded } = createElectronDouble();
  recorded.messageBoxAnswers.push(...answers);
  const parent = new electron.BrowserWindow({});
  const views: ApprovalView[] = [];
  const service = new ApprovalService({
    prompter: {
      prompt: (view, s) => (views.push(view), promptNatively({ dialog: electron.dialog as never, parent: () => parent as never, platform: 'linux' }, view, s)),
    },
  });
  const decision = await approverFor(service).approve(plan, { requestId: 1, sessionId: 's', client: {}, user: { sub: 'alice' }, progress: () => {} }, signal);
  const boxes = recorded.messageBoxes.map((args) => args[1] as Box);
  return { decision, boxes, view: views[0]! };
}

/** The part of what will run a dialog shows, located by its own heading's character range. */
function partOf(box: Box): { from: number; to: number; text: string } {
  const m = /^Exactly what will run, part \d+ of \d+ \(characters (\d+)–(\d+) of \d+\):\n/m.exec(box.detail)!;
  const from = Number(m[1]);
  const to = Number(m[2]);
  const text = [...box.detail.slice(m.index + m[0].length)].slice(0, to - from + 1).join('');
  return { from, to, text };
}

describe('the native approval dialog of a long call', () => {
  it('shows the whole ~20 KB statement and all 100 bound values, part after part, and offers Approve only on the last', async () => {
    const plan = await longPlan();
    expect(LONG_SQL.length).toBeGreaterThan(20_000);
    const { decision, boxes, view } = await ask(plan, Array(1000).fill(1));
    expect(decision.outcome).toBe('approved');

    const whole = renderArguments(argsOf(plan));
    expect(view.argumentsText).toBe(whole);
    const total = [...whole].length;
    expect(boxes.length).toBe(Math.ceil(total / PART_CHARS));
    expect(boxes.length).toBeGreaterThan(10);

    // The parts tile the text: each starts where the last ended, and together they are all of it.
    const parts = boxes.map(partOf);
    expect(parts[0]!.from).toBe(1);
    for (let i = 1; i < parts.length; i += 1) expect(parts[i]!.from).toBe(parts[i - 1]!.to + 1);
    expect(parts.at(-1)!.to).toBe(total);
    expect(parts.map((p) => p.text).join('')).toBe(whole);
    expect(whole).toContain(JSON.stringify(makeVisible(LONG_SQL)));
    for (const value of LONG_PARAMS) expect(whole).toContain(JSON.stringify(value));

    expect(boxes.slice(0, -1).every((b) => b.buttons[1] === 'Next part')).toBe(true);
    expect(boxes.at(-1)!.buttons).toEqual(['Deny', 'Approve']);
    expect(boxes.every((b) => b.defaultId === 0 && b.cancelId === 0)).toBe(true);
    expect(boxes.at(-1)!.detail).toContain(`Digest: ${view.digest}`);
  });

  it('denies when the person stops reading before the last part, or the call is cancelled on the way', async () => {
    const plan = await longPlan();
    const stopped = await ask(plan, [1, 1, 0]);
    expect(stopped.decision.outcome).toBe('denied');
    expect(stopped.boxes).toHaveLength(3);

    const c = new AbortController();
    const { electron, recorded } = createElectronDouble();
    let shown = 0;
    const dialog = {
      showMessageBox: async (...args: unknown[]) => {
        shown += 1;
        if (shown === 2) c.abort();
        return electron.dialog.showMessageBox(...args);
      },
    };
    recorded.messageBoxAnswers.push(...Array(1000).fill(1));
    const service = new ApprovalService({ prompter: { prompt: (view, s) => promptNatively({ dialog: dialog as never, parent: () => ({}) as never, platform: 'linux' }, view, s) } });
    const r = await service.approve({ plan, args: argsOf(plan), user: { sub: 'alice' }, sessionId: 's', signal: c.signal });
    expect(r.outcome).toBe('cancelled');
    expect(shown).toBe(2);
  });

  it('shows a short call in one dialog, whole, under "Exactly what will run"', async () => {
    const plan = await longPlan();
    const short: CallPlan = { ...plan, bytes: JSON.stringify({ sql: 'UPDATE appointments SET reason = $1 WHERE id = $2', params: ['<b>x</b>', 1] }) };
    const { decision, boxes, view } = await ask(short, [1]);
    expect(decision.outcome).toBe('approved');
    expect(boxes).toHaveLength(1);
    expect(boxes[0]!.detail).toContain(`Exactly what will run:\n${view.argumentsText}\n`);
    expect(boxes[0]!.buttons).toEqual(['Deny', 'Approve']);
  });
});
