import type { ApprovalAnswer, ApprovalView } from '../../../common/approval-view.ts';

/**
 * Asks a person. Adapters: the native dialog in the desktop shell (main/electron/native-prompter.ts,
 * reached over the core's port), the approval card of the headless web UI (the ApprovalService's own
 * pending list: see `waitForUi`), and a scripted prompter for tests.
 */
export interface Prompter {
  /** Resolves with the person's answer; must resolve 'deny' (or reject) once `signal` aborts. */
  prompt(view: ApprovalView, signal: AbortSignal): Promise<ApprovalAnswer>;
}

/**
 * The headless host has no dialog: the prompt is the pending card in the web UI, answered through the
 * `approvals.decide` channel. This prompter only waits; the service resolves the decision.
 */
export const waitForUi: Prompter = {
  prompt: (_view, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve('deny');
      signal.addEventListener('abort', () => resolve('deny'), { once: true });
    }),
};

/**
 * Scripted prompter FOR TESTS: answers from a script instead of a person, and records what it was shown.
 * Named as such so it is never mistaken for a real approval surface.
 */
export class ScriptedPrompterForTests implements Prompter {
  readonly shown: ApprovalView[] = [];
  readonly #script: Array<ApprovalAnswer | 'wait' | ((view: ApprovalView) => ApprovalAnswer | 'wait')>;

  constructor(script: ScriptedPrompterForTests['script'] = []) {
    this.#script = [...script];
  }

  get script() {
    return this.#script;
  }

  push(...answers: ScriptedPrompterForTests['script']): void {
    this.#script.push(...answers);
  }

  prompt(view: ApprovalView, signal: AbortSignal): Promise<ApprovalAnswer> {
    this.shown.push(view);
    const next = this.#script.shift() ?? 'deny';
    const answer = typeof next === 'function' ? next(view) : next;
    if (answer !== 'wait') return Promise.resolve(signal.aborted ? 'deny' : answer);
    return waitForUi.prompt(view, signal);
  }
}
