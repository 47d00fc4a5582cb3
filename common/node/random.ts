/**
 * Random ids for the bridge and the core, from the kernel's CSPRNG: /dev/urandom on Linux and macOS
 * rather than node:crypto, so the bridge's nonce is ready before node:crypto is loaded (bridge/core-connection.ts
 * loads it while its hello is in flight); node:crypto on Windows, which has no such file.
 */

/** `n` bytes from the OS's CSPRNG, as lowercase hex. */
export function randomHex(n: number): string {
  if (process.platform === 'win32') return process.getBuiltinModule('node:crypto').randomBytes(n).toString('hex');
  const fs = process.getBuiltinModule('node:fs');
  const bytes = Buffer.alloc(n);
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    let got = 0;
    while (got < n) {
      const read = fs.readSync(fd, bytes, got, n - got, null);
      if (read <= 0) throw new Error('short read from /dev/urandom');
      got += read;
    }
  } finally {
    fs.closeSync(fd);
  }
  return bytes.toString('hex');
}
