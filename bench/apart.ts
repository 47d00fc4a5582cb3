import { spawn } from 'node:child_process';
import { CORE_NODE_OPTIONS } from '../main/headless/start.ts';

/**
 * Runs a bench fixture in a process of its own started with the core's Node options, as the core runs
 * its work, and returns the JSON object the fixture prints on its last line. `env` is added to this
 * process's environment; `what` names the work in the error when the process fails.
 */
export async function runApart<T>(script: string, env: Record<string, string>, what: string): Promise<T> {
  const child = spawn(process.execPath, [...CORE_NODE_OPTIONS, script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const last = out.trim().split('\n').pop() ?? '';
  if (code !== 0 || !last.startsWith('{')) throw new Error(`${what}'s process exited with ${code}`);
  return JSON.parse(last) as T;
}
