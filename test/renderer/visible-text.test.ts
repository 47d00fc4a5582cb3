import fc from 'fast-check';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canonicalJson, canonicalJsonParts, hasInvisible, isInvisible, truncate, visibleSegments } from '../../renderer/src/lib/visible-text.ts';
import { REPO_ROOT } from '../helpers/ui.ts';

const TROJAN = ['\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069', '\u200E', '\u200F', '\u061C'];

describe('making the exact call visible', () => {
  it('leaves no invisible or direction-changing character in what it renders, for any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        for (const s of visibleSegments(text)) {
          for (const ch of s.text) expect(isInvisible(ch.codePointAt(0)!)).toBe(false);
        }
      }),
    );
  });

  it('loses no visible character: dropping the escapes gives back the visible text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const visible = Array.from(text).filter((c) => !isInvisible(c.codePointAt(0)!)).join('');
        const rendered = visibleSegments(text).filter((s) => s.kind === 'text').map((s) => s.text).join('');
        expect(rendered).toBe(visible);
        expect(visibleSegments(text).filter((s) => s.kind === 'escape').length).toBe(Array.from(text).length - Array.from(visible).length);
      }),
    );
  });

  it('names every bidirectional control (Trojan Source, CVE-2021-42574)', () => {
    for (const ch of TROJAN) {
      expect(hasInvisible(`a${ch}b`), ch.codePointAt(0)!.toString(16)).toBe(true);
    }
    expect(visibleSegments('x\u202Eevil\u202Cy')).toEqual([
      { kind: 'text', text: 'x' },
      { kind: 'escape', text: '⟦RLO⟧', title: 'U+202E RLO' },
      { kind: 'text', text: 'evil' },
      { kind: 'escape', text: '⟦PDF⟧', title: 'U+202C PDF' },
      { kind: 'text', text: 'y' },
    ]);
  });

  it('shows zero-width, tag and control characters, keeping newlines and tabs only when asked', () => {
    expect(visibleSegments('a\u200Bb\u{E0041}c\u0007').map((s) => s.text).join('')).toBe('a⟦ZWSP⟧b⟦U+E0041⟧c⟦U+0007⟧');
    expect(hasInvisible('line\nnext\tcol', { keepNewlines: true })).toBe(false);
    expect(visibleSegments('a\nb').map((s) => s.text).join('')).toBe('a⟦LF⟧b');
  });

  it('writes canonical JSON with keys sorted at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } }, 0)).toBe('{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}');
  });

  it('cuts long values and counts what it cut, in code points', () => {
    expect(truncate('😀'.repeat(10), 4)).toEqual({ text: '😀'.repeat(4), cut: 6 });
    const r = canonicalJsonParts({ a: 'x'.repeat(250), b: ['y'.repeat(210)], c: 'short' }, 200);
    expect(r.cut).toBe(60);
    expect(r.parts.filter((p) => p.kind === 'cut')).toEqual([
      { kind: 'cut', count: 50 },
      { kind: 'cut', count: 10 },
    ]);
    const text = r.parts.map((p) => (p.kind === 'text' ? p.text : '<cut>')).join('');
    expect(text).toBe(`{\n  "a": "${'x'.repeat(200)}<cut>",\n  "b": [\n    "${'y'.repeat(210 - 10)}<cut>"\n  ],\n  "c": "short"\n}`);
  });

  it('cannot be made to show a cut that did not happen', () => {
    for (const forged of ['… ⟪+340 characters⟫', '\u0001abc:5\u0001', '\\u0001x:3\\u0001', '… +12 characters']) {
      const r = canonicalJsonParts({ v: forged }, 200);
      expect(r.cut).toBe(0);
      expect(r.parts).toEqual([{ kind: 'text', text: canonicalJson({ v: forged }) }]);
    }
  });
});

describe('the renderer source', () => {
  it('never renders data as HTML', async () => {
    const dir = join(REPO_ROOT, 'renderer', 'src');
    const files = (await readdir(dir, { recursive: true })).filter((f) => /\.(ts|tsx)$/.test(f));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      const text = await readFile(join(dir, f), 'utf8');
      expect(text, f).not.toMatch(/dangerouslySetInnerHTML|\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(/);
    }
  });
});
