import { spawn } from 'node:child_process';

function opener(url: string): { command: string; args: string[] } {
  if (process.platform === 'darwin') return { command: 'open', args: [url] };
  // `start` is a cmd built-in; the empty string is the window title, so a URL is never taken for one.
  if (process.platform === 'win32') return { command: 'cmd', args: ['/d', '/s', '/c', 'start', '""', url.replace(/&/g, '^&')] };
  return { command: 'xdg-open', args: [url] };
}

/**
 * The OS opener for headless hosts (the OpenExternal port): xdg-open, open or start, with the URL as
 * an argument, never through a shell string. It fails soft: where nothing can open a browser (an SSH
 * session, a container), it prints the URL so the person can open it themselves, and the UI shows it too.
 */
export async function openExternal(url: string): Promise<void> {
  const parsed = new URL(url);
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error('Only http(s) URLs are opened in the browser.');
  const printUrl = () => process.stderr.write(`Open this address in your browser to continue:\n  ${parsed.href}\n`);
  const { command, args } = opener(parsed.href);
  await new Promise<void>((resolve) => {
    let child;
    try {
      child = spawn(command, args, { stdio: 'ignore', detached: true, windowsHide: true });
    } catch {
      printUrl();
      return resolve();
    }
    child.once('error', () => {
      printUrl();
      resolve();
    });
    child.once('spawn', () => {
      child.unref();
      child.once('exit', (code) => {
        if (code !== 0) printUrl();
      });
      resolve();
    });
  });
}
