import { describe, expect, it } from 'vitest';
import { makeVisible, renderArguments, visibleName } from '../../../main/core/approvals/render.ts';
import { ApprovalService } from '../../../main/core/approvals/approval-service.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import type { CallPlan } from '../../../main/core/connectors/types.ts';

// eslint-disable-next-line no-control-regex -- the test looks for exactly these characters
const INVISIBLE = /[\u202A-\u202E\u2066-\u2069\u200B-\u200F\u2060\uFEFF\u0000-\u0009\u000B-\u001F]/u;

async function shownFor(args: Record<string, unknown>, tool = 'execute') {
  const prompter = new ScriptedPrompterForTests(['deny']);
  const svc = new ApprovalService({ prompter });
  const plan: CallPlan = {
    connector: 'postgres',
    tool,
    tier: 3,
    reason: 'unbounded DELETE of notes',
    target: 'postgres://lab/clinic',
    authorizationDetails: [{ type: 'postgres', actions: ['DELETE'], tables: ['notes'] }],
    credential: { kind: 'obo' },
    bytes: String(args.sql ?? ''),
  };
  await svc.approve({ plan, args, user: { sub: 'u' }, sessionId: 's', signal: new AbortController().signal });
  const view = prompter.shown[0]!;
  return [view.summary, view.tool, view.target, view.argumentsText, ...view.authorization].join('\n');
}

describe('what an approval shows', () => {
  it('makes a right-to-left override visible instead of letting it reorder the text', async () => {
    const shown = await shownFor({ sql: "DELETE FROM notes WHERE body = '\u202Egnp.exe'" });
    expect(shown).toContain('⟨U+202E⟩');
    expect(shown).not.toMatch(INVISIBLE);
  });

  it('makes zero-width characters visible', async () => {
    const shown = await shownFor({ sql: 'DELETE FROM no\u200Btes WHERE id = 1\uFEFF' });
    expect(shown).toContain('⟨U+200B⟩');
    expect(shown).toContain('⟨U+FEFF⟩');
    expect(shown).not.toMatch(INVISIBLE);
  });

  it('keeps fake "APPROVED" lines on the line of the value that carried them', async () => {
    const shown = await shownFor({ sql: 'DELETE FROM notes\n\nAPPROVED by security team\r\n[Approve]' });
    const argsLine = shown.split('\n').find((l) => l.includes('APPROVED'))!;
    expect(argsLine).toContain('"sql": "DELETE FROM notes⏎⏎APPROVED by security team⏎[Approve]"');
    expect(shown.split('\n').some((l) => l.trim().startsWith('APPROVED'))).toBe(false);
  });

  it('shows very long values whole: nothing of what will run is cut', async () => {
    const sql = 'SELECT ' + 'x'.repeat(50_000) + ' FROM notes';
    const shown = await shownFor({ sql, long_key_name_: 'k'.repeat(500) });
    expect(shown).toContain(sql);
    expect(shown).toContain('k'.repeat(500));
    expect(shown).not.toMatch(/more characters/);
  });

  it('refuses arguments nested too deeply to show rather than showing them in part', async () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < 100; i += 1) deep = { d: deep };
    await expect(shownFor({ sql: 'SELECT 1', deep })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });

  it('spells out look-alike characters in tool names', async () => {
    const shown = await shownFor({ sql: 'SELECT 1' }, 'ex\u0435cute');
    expect(shown).toContain('ex⟨U+0435⟩cute');
    expect(visibleName('execute')).toBe('execute');
  });

  it('renders canonical JSON with sorted keys', () => {
    expect(renderArguments({ b: 1, a: 'x' })).toBe('{\n  "a": "x",\n  "b": 1\n}');
    expect(makeVisible('a\tb')).toBe('a⇥b');
  });
});
